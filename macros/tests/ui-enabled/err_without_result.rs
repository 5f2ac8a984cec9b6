#[skytrace::trace(err)]
fn count() -> usize {
    3
}

#[skytrace::trace(err)]
async fn count_async() -> usize {
    3
}

fn main() {}

#[skytrace::trace(err)]
fn returns_nothing() {}
