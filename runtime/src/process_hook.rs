//! SkyWalking Rover's process status hook, written as go2sky writes it: with
//! `SW_AGENT_PROCESS_STATUS_HOOK_ENABLE`, the file
//! `{TMPDIR}/apache_skywalking/process/{pid}/metadata.properties` says which service instance
//! this process is, and its modification time, renewed at every keep-alive, that it is alive.
//! Rover's agent-sensor scanner finds processes by it, to profile them with eBPF under the
//! right instance.
//!
//! Keys: `layer`, `service_name`, `instance_name`, `process_name` (the instance name, as
//! go2sky), `properties` (the instance properties as a JSON object), `labels` (comma-separated)
//! and `language` (`rust`).

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// What the file says of this process.
#[derive(Clone, Debug)]
pub(crate) struct ProcessMeta<'a> {
    pub(crate) service: &'a str,
    pub(crate) instance: &'a str,
    pub(crate) properties: &'a [(String, String)],
    pub(crate) labels: &'a [String],
}

/// The hook file of one process.
#[derive(Debug)]
pub(crate) struct ProcessHook {
    dir: PathBuf,
    file: PathBuf,
    written: bool,
}

impl ProcessHook {
    /// This process's file, under the system's temporary directory (`TMPDIR`).
    #[allow(dead_code)] // called by the keep-alive (being wired)
    pub(crate) fn for_this_process() -> Self {
        ProcessHook::under(&std::env::temp_dir(), std::process::id())
    }

    pub(crate) fn under(temp: &Path, pid: u32) -> Self {
        let dir = temp
            .join("apache_skywalking")
            .join("process")
            .join(pid.to_string());
        ProcessHook {
            file: dir.join("metadata.properties"),
            dir,
            written: false,
        }
    }

    /// At every keep-alive: writes the file the first time (and again if it was deleted
    /// since), renews its access and modification times after.
    pub(crate) fn keep_alive(&mut self, meta: &ProcessMeta<'_>) -> io::Result<()> {
        if self.written {
            let now = SystemTime::now();
            let times = fs::FileTimes::new().set_accessed(now).set_modified(now);
            match fs::File::options()
                .write(true)
                .open(&self.file)
                .and_then(|f| f.set_times(times))
            {
                Ok(()) => return Ok(()),
                Err(err) if err.kind() == io::ErrorKind::NotFound => self.written = false,
                Err(err) => return Err(err),
            }
        }
        // A directory left by an earlier process with this pid goes first, as go2sky does.
        match fs::remove_dir_all(&self.dir) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
            _ => {}
        }
        create_private_dir(&self.dir)?;
        fs::write(&self.file, contents(meta))?;
        self.written = true;
        Ok(())
    }

    /// At shutdown: the process is gone for Rover.
    #[allow(dead_code)] // called at shutdown (being wired)
    pub(crate) fn remove(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
        self.written = false;
    }

    #[cfg(test)]
    pub(crate) fn file(&self) -> &Path {
        &self.file
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)
}

fn contents(meta: &ProcessMeta<'_>) -> String {
    // One value per key, as go2sky's map has it: a repeated key (several `ipv4`) keeps its
    // last value.
    let mut properties: Vec<(&str, &str)> = Vec::new();
    for (key, value) in meta.properties {
        match properties.iter_mut().find(|(k, _)| *k == key.as_str()) {
            Some(entry) => entry.1 = value,
            None => properties.push((key, value)),
        }
    }
    let mut json = String::from("{");
    for (i, (key, value)) in properties.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        json_string(&mut json, key);
        json.push(':');
        json_string(&mut json, value);
    }
    json.push('}');
    let line = |text: &str| text.replace(['\n', '\r'], " ");
    format!(
        "layer=GENERAL\nservice_name={}\ninstance_name={}\nprocess_name={}\nproperties={}\nlabels={}\nlanguage=rust\n",
        line(meta.service),
        line(meta.instance),
        line(meta.instance),
        json,
        line(&meta.labels.join(",")),
    )
}

fn json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta<'a>(properties: &'a [(String, String)], labels: &'a [String]) -> ProcessMeta<'a> {
        ProcessMeta {
            service: "shop",
            instance: "shop-1@10.0.0.7",
            properties,
            labels,
        }
    }

    #[test]
    fn writes_the_file_go2sky_writes_and_touches_it_at_each_keep_alive() {
        let temp = std::env::temp_dir().join(format!("skytrace-hook-{}", std::process::id()));
        let _ = fs::remove_dir_all(&temp);
        let mut hook = ProcessHook::under(&temp, 4242);
        let properties = vec![
            ("language".to_owned(), "rust".to_owned()),
            ("ipv4".to_owned(), "10.0.0.7".to_owned()),
            ("ipv4".to_owned(), "10.0.0.8".to_owned()),
            ("OS Name".to_owned(), "linux \"x\"".to_owned()),
        ];
        let labels = vec!["a".to_owned(), "b".to_owned()];
        hook.keep_alive(&meta(&properties, &labels)).unwrap();
        assert_eq!(
            hook.file(),
            temp.join("apache_skywalking/process/4242/metadata.properties")
        );
        let text = fs::read_to_string(hook.file()).unwrap();
        assert_eq!(
            text,
            "layer=GENERAL\nservice_name=shop\ninstance_name=shop-1@10.0.0.7\n\
             process_name=shop-1@10.0.0.7\n\
             properties={\"language\":\"rust\",\"ipv4\":\"10.0.0.8\",\"OS Name\":\"linux \\\"x\\\"\"}\n\
             labels=a,b\nlanguage=rust\n"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let dir = hook.file().parent().unwrap();
            assert_eq!(
                fs::metadata(dir).unwrap().permissions().mode() & 0o777,
                0o700
            );
        }
        // Touched: an old modification time is renewed.
        let old = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        fs::File::options()
            .write(true)
            .open(hook.file())
            .unwrap()
            .set_modified(old)
            .unwrap();
        hook.keep_alive(&meta(&properties, &labels)).unwrap();
        let modified = fs::metadata(hook.file()).unwrap().modified().unwrap();
        assert!(modified > old + std::time::Duration::from_secs(1_000_000));
        // Deleted meanwhile (a temp cleaner): written again.
        fs::remove_dir_all(&temp).unwrap();
        hook.keep_alive(&meta(&properties, &labels)).unwrap();
        assert!(
            fs::read_to_string(hook.file())
                .unwrap()
                .contains("service_name=shop")
        );
        hook.remove();
        assert!(!hook.file().exists());
        let _ = fs::remove_dir_all(&temp);
    }
}
