#[skytrace::trace(name = "a", err, name = "b")]
fn a() -> Result<(), String> {
    Ok(())
}

#[skytrace::trace(err, err)]
fn b() -> Result<(), String> {
    Ok(())
}

#[skytrace::trace(tags(user.id = 1, user.id = 2))]
fn c() {}

#[skytrace::trace(tags(a = 1), tags(b = 2))]
fn d() {}

fn main() {}
