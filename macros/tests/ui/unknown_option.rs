#[skytrace::trace(nme = "load")]
fn load() {}

#[skytrace::entry_span(carier = headers)]
fn handle(headers: &std::collections::HashMap<String, String>) {
    let _ = headers;
}

fn main() {}
