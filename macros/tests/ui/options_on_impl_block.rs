struct Repo;

#[skytrace::trace(err)]
impl Repo {
    #[skytrace::trace]
    fn get(&self) {}
}

fn main() {}
