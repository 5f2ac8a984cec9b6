struct Addr;

#[skytrace::exit_span(peer = addr)]
fn call(addr: Addr) {
    let _ = addr;
}

fn main() {}
