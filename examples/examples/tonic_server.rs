//! A tonic server traced by `GrpcServerLayer` and a client traced by `GrpcClientLayer`, in one
//! process: each call is an exit span in the caller and an entry span (`/pkg.Service/Method`)
//! in the server, linked by the `sw8` metadata. Segments go to the console unless
//! `SW_AGENT_COLLECTOR_BACKEND_SERVICES` is set.
//!
//! The service is one of SkyWalking's own (`ConfigurationDiscoveryService`, generated in
//! `skytrace-proto`), which keeps this example free of a build script: any tonic service is
//! traced the same way.
//!
//! ```sh
//! # Calls itself twice (one OK, one NOT_FOUND), prints the segments, exits:
//! cargo run -p skytrace-examples --example tonic_server
//! # Keeps serving on 127.0.0.1:50051:
//! cargo run -p skytrace-examples --example tonic_server -- serve
//! ```

use std::error::Error;
use std::time::Duration;

use skytrace::integrations::tonic::{GrpcClientLayer, GrpcServerLayer};
use skytrace::{Instrument, Span};
use skytrace_proto::v3::configuration_discovery_service_client::ConfigurationDiscoveryServiceClient;
use skytrace_proto::v3::configuration_discovery_service_server::{
    ConfigurationDiscoveryService, ConfigurationDiscoveryServiceServer,
};
use skytrace_proto::v3::{Commands, ConfigurationSyncRequest};
use tonic::transport::{Endpoint, Server};
use tonic::{Request, Response, Status};
use tower_layer::Layer;

struct Configurations;

#[tonic::codegen::async_trait]
impl ConfigurationDiscoveryService for Configurations {
    async fn fetch_configurations(
        &self,
        request: Request<ConfigurationSyncRequest>,
    ) -> Result<Response<Commands>, Status> {
        // The handler runs inside the call's entry span: this is its child.
        let service = request.into_inner().service;
        let found = async {
            tokio::time::sleep(Duration::from_millis(2)).await;
            service == "shop"
        }
        .in_span(Span::local("lookup"))
        .await;
        if found {
            Ok(Response::new(Commands::default()))
        } else {
            Err(Status::not_found(format!("no configuration for {service}")))
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let agent = skytrace_examples::init_example("tonic-example")?;
    let serve_forever = std::env::args().nth(1).as_deref() == Some("serve");
    let listener = tokio::net::TcpListener::bind(if serve_forever {
        "127.0.0.1:50051"
    } else {
        "127.0.0.1:0"
    })
    .await?;
    let addr = listener.local_addr()?;
    let server = Server::builder()
        .layer(GrpcServerLayer::new())
        .serve_with_incoming(
            ConfigurationDiscoveryServiceServer::new(Configurations),
            tokio_stream::wrappers::TcpListenerStream::new(listener),
        );
    if serve_forever {
        println!("serving gRPC on {addr}");
        server.await?;
        return Ok(());
    }
    tokio::spawn(server);

    // The client: the channel wrapped in the client layer, handed to the generated client.
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))?;
    let channel = GrpcClientLayer::for_endpoint(&endpoint).layer(endpoint.connect().await?);
    let mut client = ConfigurationDiscoveryServiceClient::new(channel);
    // Exit spans need a trace to belong to: here a job's entry span.
    async {
        for service in ["shop", "unknown"] {
            let request = ConfigurationSyncRequest {
                service: service.into(),
                uuid: String::new(),
            };
            match client.fetch_configurations(request).await {
                Ok(_) => println!("fetchConfigurations({service}) -> OK"),
                Err(status) => println!("fetchConfigurations({service}) -> {:?}", status.code()),
            }
        }
    }
    .in_span(Span::root_entry("sync-configurations"))
    .await;

    agent.shutdown_async(Duration::from_secs(5)).await;
    Ok(())
}
