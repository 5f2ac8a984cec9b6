#[skytrace::trace(name = 42)]
fn a() {}

#[skytrace::trace(name = load)]
fn b() {}

#[skytrace::trace(layer = "http")]
fn c() {}

#[skytrace::trace(component = "http")]
fn d() {}

#[skytrace::trace(component = -1)]
fn e() {}

#[skytrace::trace(err = true)]
fn f() -> Result<(), String> {
    Ok(())
}

#[skytrace::trace(tags = 1)]
fn g() {}

#[skytrace::entry_span(carrier = req.headers())]
fn h(req: http::Request<()>) {
    let _ = req;
}

fn main() {}
