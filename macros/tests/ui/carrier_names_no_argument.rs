use std::collections::HashMap;

#[skytrace::entry_span(carrier = header)]
fn handle(headers: &HashMap<String, String>, id: u64) {
    let _ = (headers, id);
}

#[skytrace::entry_span(carrier = headers)]
fn job() {}

fn main() {}
