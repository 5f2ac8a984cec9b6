#[skytrace::exit_span(name = "GET:/stock")]
fn call() {}

fn main() {}
