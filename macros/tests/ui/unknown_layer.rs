#[skytrace::trace(layer = RPCFramework)]
fn a() {}

#[skytrace::trace(layer = Grpc)]
fn b() {}

fn main() {}
