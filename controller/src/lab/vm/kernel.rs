//! TEMPORARY development stand-in for the kernel cache (replaced by the
//! real module from the `kernel` branch).

use std::path::{Path, PathBuf};

pub struct Kernel {
    pub release: String,
    pub image: PathBuf,
    pub modules: Option<PathBuf>,
    pub source: String,
}

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("{0}")]
    Other(String),
}

pub fn cache_root() -> PathBuf {
    PathBuf::from("/root/.cache/lnst/kernels")
}

pub fn resolve(_spec: Option<&str>, _cache: &Path, _progress: &mut dyn FnMut(&str)) -> Result<Kernel, KernelError> {
    Ok(Kernel {
        release: "6.1.0-57-amd64".into(),
        image: "/tmp/k/vmlinux".into(),
        modules: Some("/tmp/k/root/lib/modules/6.1.0-57-amd64".into()),
        source: "dev stand-in".into(),
    })
}

pub fn module_closure(modules: &Path, names: &[&str]) -> Result<Vec<PathBuf>, KernelError> {
    let dep = std::fs::read_to_string(modules.join("modules.dep")).map_err(|e| KernelError::Other(e.to_string()))?;
    let mut map = std::collections::HashMap::new();
    for l in dep.lines() {
        let Some((a, b)) = l.split_once(':') else { continue };
        let n = Path::new(a).file_name().unwrap().to_string_lossy().trim_end_matches(".ko").replace('-', "_");
        map.insert(n, (a.to_string(), b.split_whitespace().map(str::to_string).collect::<Vec<_>>()));
    }
    let mut out: Vec<PathBuf> = Vec::new();
    fn add(n: &str, map: &std::collections::HashMap<String, (String, Vec<String>)>, modules: &Path, out: &mut Vec<PathBuf>) {
        let Some((a, ds)) = map.get(n) else { return };
        for d in ds.iter().rev() {
            let dn = Path::new(d).file_name().unwrap().to_string_lossy().trim_end_matches(".ko").replace('-', "_");
            add(&dn, map, modules, out);
        }
        let p = modules.join(a);
        if !out.contains(&p) {
            out.push(p);
        }
    }
    for n in names {
        add(&n.replace('-', "_"), &map, modules, &mut out);
    }
    Ok(out)
}

pub fn read_module(path: &Path) -> std::io::Result<Vec<u8>> {
    std::fs::read(path)
}
