#[derive(Debug)]
struct Opaque;

#[skytrace::trace(err)]
fn load() -> Result<(), Opaque> {
    Err(Opaque)
}

fn main() {}
