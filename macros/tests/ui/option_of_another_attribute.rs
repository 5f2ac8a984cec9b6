#[skytrace::trace(peer = "db:5432")]
fn a() {}

#[skytrace::exit_span(peer = "db:5432", carrier = headers)]
fn b(headers: &std::collections::HashMap<String, String>) {
    let _ = headers;
}

fn main() {}
