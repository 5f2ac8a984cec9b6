struct Opaque;

#[skytrace::trace(tags(value = opaque))]
fn load(opaque: Opaque) {
    let _ = opaque;
}

fn main() {}
