trait Store {
    #[skytrace::trace]
    fn get(&self) -> u8;
}

fn main() {}
