//! Static key pairs: generation, files, printable public keys, fingerprints.
//!
//! Each controller and each agent owns one Curve25519 key pair. The private
//! half lives in a file created mode 0600 (a group- or world-readable key is
//! refused on load, like ssh does); the public half is printed as
//! `lnst1:<base64>` for pool files (`key = "lnst1:…"`) and the agent's
//! `accepted_keys`. A [`Fingerprint`] (the first 8 bytes of the SHA-256 of the
//! public key, `ab12:cd34:ef56:7890`) is what people compare in messages.
//! The curve arithmetic is snow's own (the same code the handshake uses).

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use snow::params::DHChoice;
use snow::resolvers::{CryptoResolver, DefaultResolver};
use zeroize::Zeroizing;

/// Length of a Curve25519 public or private key in bytes.
pub const KEY_LEN: usize = 32;

/// Prefix of a printable public key; the `1` versions the format.
pub const PUBLIC_PREFIX: &str = "lnst1:";

/// Prefix of the line holding the private key inside a key file.
const PRIVATE_PREFIX: &str = "lnst-private-1:";

/// What can go wrong with keys and key files.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("invalid public key {text:?}: {reason} (expected \"lnst1:\" followed by 44 base64 characters, as printed by `keygen`)")]
    BadPublic { text: String, reason: String },
    #[error("no key file at {}: create one with `{keygen}`", path.display())]
    Missing { path: PathBuf, keygen: &'static str },
    #[error("private key {} is readable by group or others (mode {mode:04o}); run `chmod 600 {}`", path.display(), path.display())]
    Permissions { path: PathBuf, mode: u32 },
    #[error("private key file {} is not valid: {reason}", path.display())]
    BadFile { path: PathBuf, reason: String },
    #[error("{} already exists; pass --force to replace it (the old key stops working everywhere it is pinned or accepted)", path.display())]
    Exists { path: PathBuf },
    #[error("{what} {}: {error}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot generate a key: {0}")]
    Crypto(String),
}

/// A Curve25519 public key: what a pool file pins and an agent accepts.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; KEY_LEN]);

/// A short, human-comparable digest of a public key: `ab12:cd34:ef56:7890`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 8]);

impl PublicKey {
    /// Wraps raw key bytes.
    pub const fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        PublicKey(bytes)
    }

    /// Builds a key from a slice, as snow hands back the peer's static key.
    pub fn from_slice(b: &[u8]) -> Option<Self> {
        <[u8; KEY_LEN]>::try_from(b).ok().map(PublicKey)
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// The short fingerprint people compare.
    pub fn fingerprint(&self) -> Fingerprint {
        let digest = Sha256::digest(self.0);
        let mut f = [0u8; 8];
        f.copy_from_slice(&digest[..8]);
        Fingerprint(f)
    }

    /// The printable form, `lnst1:<base64>`.
    pub fn to_text(&self) -> String {
        format!("{PUBLIC_PREFIX}{}", B64.encode(self.0))
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.fingerprint())
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, KeyError> {
        let bad = |reason: &str| KeyError::BadPublic {
            text: s.to_string(),
            reason: reason.to_string(),
        };
        let t = s.trim();
        let b64 = t
            .strip_prefix(PUBLIC_PREFIX)
            .ok_or_else(|| bad("missing the \"lnst1:\" prefix"))?;
        let raw = B64
            .decode(b64)
            .map_err(|e| bad(&format!("bad base64: {e}")))?;
        PublicKey::from_slice(&raw)
            .ok_or_else(|| bad(&format!("{} bytes instead of {KEY_LEN}", raw.len())))
    }
}

impl serde::Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_text())
    }
}

impl<'de> serde::Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, pair) in self.0.chunks(2).enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{:02x}{:02x}", pair[0], pair[1])?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A static key pair. The private half is wiped from memory on drop and
/// never printed (`Debug` shows the fingerprint only).
#[derive(Clone)]
pub struct KeyPair {
    private: Zeroizing<[u8; KEY_LEN]>,
    public: PublicKey,
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyPair(public {})", self.public.fingerprint())
    }
}

fn curve() -> Result<Box<dyn snow::types::Dh>, KeyError> {
    DefaultResolver
        .resolve_dh(&DHChoice::Curve25519)
        .ok_or_else(|| KeyError::Crypto("snow has no Curve25519 implementation".into()))
}

impl KeyPair {
    /// A fresh key pair from the operating system's random source.
    pub fn generate() -> Result<Self, KeyError> {
        let mut rng = DefaultResolver
            .resolve_rng()
            .ok_or_else(|| KeyError::Crypto("snow has no random source".into()))?;
        let mut dh = curve()?;
        dh.generate(&mut *rng)
            .map_err(|e| KeyError::Crypto(e.to_string()))?;
        let mut private = Zeroizing::new([0u8; KEY_LEN]);
        private.copy_from_slice(dh.privkey());
        Self::from_private(*private)
    }

    /// Rebuilds the pair from its private half (the public half is derived).
    pub fn from_private(private: [u8; KEY_LEN]) -> Result<Self, KeyError> {
        let private = Zeroizing::new(private);
        let mut dh = curve()?;
        dh.set(&private[..]);
        let public = PublicKey::from_slice(dh.pubkey())
            .ok_or_else(|| KeyError::Crypto("unexpected public key length".into()))?;
        Ok(KeyPair { private, public })
    }

    /// The public half.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// The private half, for the handshake only.
    pub(crate) fn private_bytes(&self) -> &[u8; KEY_LEN] {
        &self.private
    }

    /// Text of a private key file: comments naming the public key, then the
    /// private key line.
    fn file_text(&self) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "# lnst private key: keep it secret (mode 0600).\n\
             # public key: {}\n# fingerprint: {}\n{PRIVATE_PREFIX}{}\n",
            self.public,
            self.public.fingerprint(),
            B64.encode(&self.private[..])
        ))
    }

    /// Writes the private key to `path`, created mode 0600, and the public
    /// key to `path.pub` (mode 0644). An existing key file is refused unless
    /// `overwrite`; then it is replaced atomically (temp file + rename).
    pub fn save(&self, path: &Path, overwrite: bool) -> Result<(), KeyError> {
        let io = |what, source| KeyError::Io {
            what,
            path: path.to_path_buf(),
            error: source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(|e| io("cannot create the directory of", e))?;
            }
        }
        if path.exists() && !overwrite {
            return Err(KeyError::Exists {
                path: path.to_path_buf(),
            });
        }
        let tmp = tmp_path(path);
        let _ = fs::remove_file(&tmp);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| io("cannot create", e))?;
        // The mode passed to open is filtered by the umask, which can only
        // remove bits; set it explicitly anyway so the file is exactly 0600.
        f.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(|e| io("cannot chmod", e))?;
        f.write_all(self.file_text().as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(|e| io("cannot write", e))?;
        drop(f);
        fs::rename(&tmp, path).map_err(|e| io("cannot rename the new key onto", e))?;
        let pubpath = public_path(path);
        let _ = fs::remove_file(&pubpath);
        fs::write(&pubpath, format!("{}\n", self.public)).map_err(|e| KeyError::Io {
            what: "cannot write",
            path: pubpath.clone(),
            error: e,
        })?;
        let _ = fs::set_permissions(&pubpath, fs::Permissions::from_mode(0o644));
        Ok(())
    }

    /// Loads a private key file written by [`KeyPair::save`], refusing one
    /// that group or others can read. `keygen` names the command that makes
    /// one, for the message when the file is missing.
    pub fn load(path: &Path, keygen: &'static str) -> Result<Self, KeyError> {
        let meta = match fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(KeyError::Missing {
                    path: path.to_path_buf(),
                    keygen,
                })
            }
            Err(e) => {
                return Err(KeyError::Io {
                    what: "cannot read",
                    path: path.to_path_buf(),
                    error: e,
                })
            }
        };
        let bad = |reason: &str| KeyError::BadFile {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        };
        if !meta.is_file() {
            return Err(bad("not a regular file"));
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions {
                path: path.to_path_buf(),
                mode,
            });
        }
        let text = Zeroizing::new(fs::read_to_string(path).map_err(|e| KeyError::Io {
            what: "cannot read",
            path: path.to_path_buf(),
            error: e,
        })?);
        let mut found = None;
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let b64 = line.strip_prefix(PRIVATE_PREFIX).ok_or_else(|| {
                bad("unexpected line (a private key file holds one \"lnst-private-1:\" line)")
            })?;
            if found.is_some() {
                return Err(bad("more than one private key line"));
            }
            let raw = Zeroizing::new(
                B64.decode(b64)
                    .map_err(|e| bad(&format!("bad base64: {e}")))?,
            );
            let arr = <[u8; KEY_LEN]>::try_from(&raw[..])
                .map_err(|_| bad(&format!("{} bytes instead of {KEY_LEN}", raw.len())))?;
            found = Some(arr);
        }
        let private = found.ok_or_else(|| bad("no \"lnst-private-1:\" line"))?;
        Self::from_private(private)
    }
}

/// Where [`KeyPair::save`] writes the public half: `<path>.pub`.
pub fn public_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".tmp{}", std::process::id()));
    PathBuf::from(s)
}

/// `keygen` for both commands: creates a key pair at `path` (refusing to
/// replace one unless `force`) and returns it so the caller can print
/// [`KeyPair::public`] and its fingerprint.
pub fn keygen(path: &Path, force: bool) -> Result<KeyPair, KeyError> {
    if path.exists() && !force {
        return Err(KeyError::Exists {
            path: path.to_path_buf(),
        });
    }
    let kp = KeyPair::generate()?;
    kp.save(path, force)?;
    Ok(kp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("lnst-keys-{}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn text_form_round_trips_and_rejects_garbage() {
        let kp = KeyPair::generate().unwrap();
        let text = kp.public().to_text();
        assert!(text.starts_with("lnst1:") && text.len() == 6 + 44, "{text}");
        assert_eq!(text.parse::<PublicKey>().unwrap(), *kp.public());
        for bad in ["", "lnst1:", "lnst2:AAAA", "lnst1:!!!!", "lnst1:AAAA"] {
            assert!(bad.parse::<PublicKey>().is_err(), "{bad} accepted");
        }
        let fp = kp.public().fingerprint().to_string();
        assert_eq!(fp.len(), 19, "{fp}");
        assert_eq!(fp.matches(':').count(), 3, "{fp}");
        assert_ne!(KeyPair::generate().unwrap().public(), kp.public());
        // Debug never shows the private key.
        let dbg = format!("{kp:?}");
        assert!(!dbg.contains(&B64.encode(kp.private_bytes())), "{dbg}");
    }

    #[test]
    fn public_half_is_derived_consistently() {
        let kp = KeyPair::generate().unwrap();
        let again = KeyPair::from_private(*kp.private_bytes()).unwrap();
        assert_eq!(again.public(), kp.public());
    }

    #[test]
    fn key_file_is_0600_and_round_trips() {
        let d = tmpdir("save");
        let p = d.join("sub/agent.key");
        let kp = keygen(&p, false).unwrap();
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dirmode = fs::metadata(p.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dirmode, 0o700);
        let loaded = KeyPair::load(&p, "lnst-agent keygen").unwrap();
        assert_eq!(loaded.public(), kp.public());
        let pubtext = fs::read_to_string(public_path(&p)).unwrap();
        assert_eq!(pubtext.trim().parse::<PublicKey>().unwrap(), *kp.public());
        // No overwrite without force; with force a new key replaces it.
        let e = keygen(&p, false).unwrap_err().to_string();
        assert!(e.contains("--force"), "{e}");
        assert_eq!(KeyPair::load(&p, "x").unwrap().public(), kp.public());
        let kp2 = keygen(&p, true).unwrap();
        assert_ne!(kp2.public(), kp.public());
        assert_eq!(KeyPair::load(&p, "x").unwrap().public(), kp2.public());
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn readable_key_is_refused() {
        let d = tmpdir("perm");
        let p = d.join("k");
        keygen(&p, false).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        let e = KeyPair::load(&p, "x").unwrap_err();
        assert!(
            matches!(e, KeyError::Permissions { mode: 0o644, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("chmod 600"), "{e}");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        assert!(KeyPair::load(&p, "x").is_err());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn missing_and_corrupt_files_explain() {
        let d = tmpdir("bad");
        let e = KeyPair::load(&d.join("nope"), "lnst-ctl keygen")
            .unwrap_err()
            .to_string();
        assert!(e.contains("lnst-ctl keygen"), "{e}");
        let p = d.join("k");
        for text in ["", "hello\n", "lnst-private-1:AAAA\n"] {
            fs::write(&p, text).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
            assert!(
                matches!(KeyPair::load(&p, "x"), Err(KeyError::BadFile { .. })),
                "{text:?} accepted"
            );
        }
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn serde_uses_text_form() {
        #[derive(serde::Deserialize)]
        struct W {
            key: PublicKey,
        }
        let kp = KeyPair::generate().unwrap();
        let w: W = serde_json_like(&kp.public().to_text());
        assert_eq!(w.key, *kp.public());

        fn serde_json_like(s: &str) -> W {
            use serde::de::value::{Error, MapDeserializer};
            use serde::Deserialize;
            let map = vec![("key", s)].into_iter();
            W::deserialize(MapDeserializer::<_, Error>::new(map)).unwrap()
        }
    }
}
