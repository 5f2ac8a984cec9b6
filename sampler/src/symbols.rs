//! Function names for sampled addresses, from the symbol tables of the executable and its
//! libraries (read from their files after sampling, never in the signal handler). Rust names
//! are demangled without their hash (`app::handlers::checkout`).
//!
//! A stripped binary has no `.symtab`: only its exported (`.dynsym`) functions get names, the
//! rest show as `module+0xoffset`. Inlined functions are not told apart (that needs DWARF
//! line tables): a sample in inlined code is named after the function it was inlined into.

use std::collections::HashMap;
use std::fs::File;
use std::ops::Range;

use object::read::ReadCache;
use object::{Object as _, ObjectSymbol as _, SymbolKind};

use crate::os::ModuleImage;

/// Names the functions at sampled addresses. Made by [`crate::Session::symbolizer`].
pub struct Symbolizer {
    modules: Vec<ModuleSymbols>,
    names: HashMap<(usize, usize), String>,
}

struct ModuleSymbols {
    avma: Range<u64>,
    bias: u64,
    /// The file's name, for addresses without a symbol.
    short_name: String,
    /// Functions by start address (in the file's addresses): start, end, mangled name.
    functions: Vec<(u64, u64, String)>,
}

impl Symbolizer {
    /// A symbolizer for the modules loaded now (without a session).
    ///
    /// ```
    /// let mut symbols = skytrace_sampler::Symbolizer::for_this_process();
    /// let name = symbols.function(std::process::exit as *const () as u64);
    /// assert!(name.contains("exit"), "{name}");
    /// ```
    pub fn for_this_process() -> Self {
        Symbolizer::new(&crate::os::loaded_modules())
    }

    pub(crate) fn new(images: &[ModuleImage]) -> Self {
        let modules = images
            .iter()
            .map(|image| {
                let path = if image.path.is_empty() {
                    "/proc/self/exe".to_owned()
                } else {
                    image.path.clone()
                };
                let short_name = if image.path.is_empty() {
                    std::env::current_exe()
                        .ok()
                        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                        .unwrap_or_else(|| "main".to_owned())
                } else {
                    image
                        .path
                        .rsplit('/')
                        .next()
                        .unwrap_or(&image.path)
                        .to_owned()
                };
                ModuleSymbols {
                    avma: image.avma.clone(),
                    bias: image.bias,
                    short_name,
                    functions: functions_of(&path),
                }
            })
            .collect();
        Symbolizer {
            modules,
            names: HashMap::new(),
        }
    }

    /// The function containing `address`: its demangled name, else `module+0xoffset`, else
    /// the address in hex.
    pub fn function(&mut self, address: u64) -> String {
        let Some((m, module)) = self
            .modules
            .iter()
            .enumerate()
            .find(|(_, m)| m.avma.contains(&address))
        else {
            return format!("{address:#x}");
        };
        let in_file = address.wrapping_sub(module.bias);
        let found = match module
            .functions
            .binary_search_by(|(start, _, _)| start.cmp(&in_file))
        {
            Ok(i) => Some(i),
            Err(0) => None,
            Err(i) => Some(i - 1),
        }
        .filter(|&i| {
            module
                .functions
                .get(i)
                .is_some_and(|(_, end, _)| in_file < *end)
        });
        match found {
            Some(i) => self
                .names
                .entry((m, i))
                .or_insert_with(|| {
                    format!("{:#}", rustc_demangle::demangle(&module.functions[i].2))
                })
                .clone(),
            None => format!("{}+{in_file:#x}", module.short_name),
        }
    }
}

/// The functions named in the ELF file at `path` (`.symtab` and `.dynsym`), sorted; none when
/// the file cannot be read (the vDSO has no file).
fn functions_of(path: &str) -> Vec<(u64, u64, String)> {
    let Ok(file) = File::open(path) else {
        return Vec::new();
    };
    let cache = ReadCache::new(file);
    let Ok(elf) = object::read::elf::ElfFile64::<object::Endianness, _>::parse(&cache) else {
        return Vec::new();
    };
    let mut functions: Vec<(u64, u64, String)> = elf
        .symbols()
        .chain(elf.dynamic_symbols())
        .filter(|s| s.kind() == SymbolKind::Text && s.address() != 0 && s.is_definition())
        .filter_map(|s| {
            let name = s.name().ok()?;
            Some((
                s.address(),
                s.address().saturating_add(s.size()),
                name.to_owned(),
            ))
        })
        .collect();
    functions.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    functions.dedup_by_key(|f| f.0);
    // A symbol without a size reaches to the next one.
    for i in 0..functions.len() {
        if functions[i].1 == functions[i].0 {
            functions[i].1 = functions.get(i + 1).map_or(u64::MAX, |next| next.0);
        }
    }
    functions
}
