//! Component ids from OAP's component-libraries list: they pick the icon and analysis OAP uses.
//! Rust's own range is `[11000, 12000)`.

/// Not known.
pub const UNKNOWN: i32 = 0;
/// Rust code with no more specific component.
pub const RUST: i32 = 11000;
/// An HTTP server (OAP's `http`); also what the Go agent's HTTP spans use on both sides.
pub const HTTP: i32 = 49;
/// An HTTP client (OAP's `HttpClient`): the Java agent's Apache HttpClient plugin and the
/// Node.js agent's `http` client spans.
pub const HTTP_CLIENT: i32 = 2;
/// Any RPC framework.
pub const RPC: i32 = 50;
/// gRPC.
pub const GRPC: i32 = 23;
/// MySQL.
pub const MYSQL: i32 = 5;
/// PostgreSQL.
pub const POSTGRESQL: i32 = 22;
/// Redis.
pub const REDIS: i32 = 7;
/// Kafka.
pub const KAFKA: i32 = 27;
/// Kafka, producing side (`kafka-producer`).
pub const KAFKA_PRODUCER: i32 = 40;
/// Kafka, consuming side (`kafka-consumer`).
pub const KAFKA_CONSUMER: i32 = 41;
/// Plain TCP.
pub const TCP: i32 = 110;
/// RabbitMQ, publishing side.
pub const RABBITMQ_PRODUCER: i32 = 52;
/// RabbitMQ, consuming side.
pub const RABBITMQ_CONSUMER: i32 = 53;
/// NATS.
pub const NATS: i32 = 132;
