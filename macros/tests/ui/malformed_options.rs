#[skytrace::trace(name = "a" err)]
fn a() {}

#[skytrace::trace(tags(user.id))]
fn b() {}

#[skytrace::trace(name)]
fn c() {}

#[skytrace::trace(name = "")]
fn d() {}

fn main() {}
