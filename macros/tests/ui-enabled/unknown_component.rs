#[skytrace::trace(component = NO_SUCH_COMPONENT)]
fn call() {}

fn main() {}
