#[skytrace::trace]
struct Cache;

#[skytrace::trace]
const LIMIT: usize = 3;

#[skytrace::exit_span(peer = "db:5432")]
mod db {}

struct Repo;

#[skytrace::entry_span]
impl Repo {
    fn get(&self) {}
}

fn main() {}
