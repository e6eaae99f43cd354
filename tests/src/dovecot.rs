//! A private Dovecot 2.3 per test, to check that Mailfold's Maildir++ trees are Dovecot's.
//!
//! Each [`Dovecot`] writes a throw-away `dovecot.conf` into a temporary folder and reads no
//! system configuration (`dovecot -c`, `doveadm -c`): one user in a `passwd-file` userdb,
//! whose home and mail are the Maildir under test (`maildir:` with the Maildir++ layout), the
//! quota plugin with `quota = maildir:User quota`, and runtime and state folders and the log
//! in the temporary folder. No protocol is enabled, so nothing listens on the network.
//!
//! `doveadm` asks the auth service of a running master for the user, so the master runs in
//! the foreground for the life of the value (SIGTERM on drop). Dovecot refuses to touch mail
//! as root (`Mail access not allowed for root`), so when the tests run as root the user's
//! files belong to `nobody`, and [`Dovecot::hand_over`] gives a tree written by Mailfold to
//! that owner before Dovecot reads it.
//!
//! A missing Dovecot fails the test with a message naming the packages
//! (`dovecot-core`, `dovecot-imapd`; tests/install-deps.sh installs them).

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mailfold_store::QuotaLimit;

/// The Dovecot master.
pub const DOVECOT: &str = "/usr/sbin/dovecot";
/// `doveadm`, Dovecot's administration tool.
pub const DOVEADM: &str = "/usr/bin/doveadm";
/// The one user in the userdb.
pub const USER: &str = "tester";

/// Who owns the user's mail, and which account Dovecot's own services run as.
#[derive(Debug, Clone)]
pub struct MailOwner {
    /// Owner of the mail files (never 0: Dovecot refuses root).
    pub uid: u32,
    /// Their group.
    pub gid: u32,
    /// The account Dovecot's services run as: the current user.
    pub internal_user: String,
}

/// A running Dovecot master serving one user whose mail is a given Maildir.
pub struct Dovecot {
    folder: tempfile::TempDir,
    config: PathBuf,
    master: Option<Child>,
    owner: MailOwner,
}

impl Dovecot {
    /// Starts Dovecot for the Maildir at `maildir` (created if missing, and handed to the mail
    /// owner), with `quota` as its quota rule; waits until the auth service answers.
    pub fn start(maildir: &Path, quota: QuotaLimit) -> Dovecot {
        for binary in [DOVECOT, DOVEADM] {
            assert!(
                Path::new(binary).is_file(),
                "{binary} is missing: the Dovecot interoperability tests need Dovecot 2.3 \
                 (Debian packages dovecot-core and dovecot-imapd; run tests/install-deps.sh)"
            );
        }
        let folder = tempfile::tempdir().expect("creating the Dovecot folder");
        // The mail owner is not root: it must be able to reach the sockets in here.
        fs::set_permissions(folder.path(), fs::Permissions::from_mode(0o755))
            .expect("opening the Dovecot folder");
        let owner = mail_owner();

        fs::create_dir_all(maildir).expect("creating the Maildir root");
        hand_over_tree(maildir, &owner);
        let config = write_config(folder.path(), maildir, &owner, quota);

        let log = fs::File::create(folder.path().join("master.err")).expect("creating log");
        let master = Command::new(DOVECOT)
            .arg("-F")
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting dovecot");
        let mut dovecot = Dovecot {
            folder,
            config,
            master: Some(master),
            owner,
        };
        dovecot.wait_until_ready();
        dovecot
    }

    /// The user's mail owner.
    pub fn owner(&self) -> &MailOwner {
        &self.owner
    }

    /// Runs `doveadm -c <config> ARGS` and returns its standard output; fails the test, with
    /// the log, when doveadm fails.
    pub fn doveadm(&self, args: &[&str]) -> String {
        self.doveadm_with_input(args, b"")
    }

    /// [`Dovecot::doveadm`] with `input` on standard input (`doveadm save`).
    pub fn doveadm_with_input(&self, args: &[&str], input: &[u8]) -> String {
        let mut child = Command::new(DOVEADM)
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting doveadm");
        {
            let mut stdin = child.stdin.take().expect("doveadm stdin pipe");
            stdin.write_all(input).expect("writing to doveadm");
        }
        let output = child.wait_with_output().expect("waiting for doveadm");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "doveadm {args:?} failed with {}:\n{stderr}\nlog:\n{}",
            output.status,
            self.log_text()
        );
        // Dovecot reports what it dislikes in a tree (a corrupt maildirsize, a bad file name)
        // as an error or warning and carries on: for these tests that is a failure too.
        assert!(
            !["Error:", "Warning:", "Panic:", "Fatal:"]
                .iter()
                .any(|level| stderr.contains(level)),
            "doveadm {args:?} complained:\n{stderr}"
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Gives `path` and everything below it to the mail owner, so that Dovecot can read and
    /// change a tree another user wrote.
    pub fn hand_over(&self, path: &Path) {
        hand_over_tree(path, &self.owner);
    }

    /// What Dovecot logged so far.
    pub fn log_text(&self) -> String {
        ["dovecot.log", "master.err"]
            .iter()
            .filter_map(|name| fs::read_to_string(self.folder.path().join(name)).ok())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits for the auth service's userdb socket, which every `doveadm -u` needs.
    fn wait_until_ready(&mut self) {
        let socket = self.folder.path().join("run/auth-userdb");
        let deadline = Instant::now() + Duration::from_secs(15);
        while !socket.exists() {
            let exited = self
                .master
                .as_mut()
                .and_then(|m| m.try_wait().ok().flatten());
            if let Some(status) = exited {
                panic!("dovecot exited with {status}:\n{}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "dovecot did not come up:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let Some(mut master) = self.master.take() else {
            return;
        };
        // SIGTERM lets the master stop its services; SIGKILL only if it does not.
        let _ = Command::new("kill")
            .args(["-TERM", &master.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = master.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = master.kill();
        let _ = master.wait();
    }
}

/// Writes the passwd-file and `dovecot.conf` into `folder`; returns the configuration's path.
fn write_config(folder: &Path, maildir: &Path, owner: &MailOwner, quota: QuotaLimit) -> PathBuf {
    for sub in ["run", "state"] {
        fs::create_dir_all(folder.join(sub)).expect("creating a Dovecot folder");
    }
    // passwd-file: user:password:uid:gid:gecos:home:shell:extra fields.
    let passwd = folder.join("passwd");
    let line = format!(
        "{USER}:{{PLAIN}}secret:{}:{}::{}::\n",
        owner.uid,
        owner.gid,
        maildir.display()
    );
    fs::write(&passwd, line).expect("writing passwd-file");

    let folder_text = folder.display();
    let text = format!(
        "# Written by mailfold-tests for one test; no system configuration is read.
base_dir = {folder_text}/run
state_dir = {folder_text}/state
log_path = {folder_text}/dovecot.log
protocols =
ssl = no
# Dovecot's own services run as the current user (root here); mail is never root's.
default_internal_user = {internal}
default_internal_group = {internal_group}
default_login_user = {internal}
first_valid_uid = {uid}
first_valid_gid = {gid}
mail_location = maildir:{maildir}:LAYOUT=maildir++
mail_plugins = quota
passdb {{
  driver = passwd-file
  args = {passwd}
}}
userdb {{
  driver = passwd-file
  args = {passwd}
}}
plugin {{
  quota = maildir:User quota
  quota_rule = *:bytes={bytes}:messages={messages}
}}
",
        internal = owner.internal_user,
        internal_group = internal_group(),
        uid = owner.uid,
        gid = owner.gid,
        maildir = maildir.display(),
        passwd = passwd.display(),
        bytes = quota.bytes,
        messages = quota.messages,
    );
    let config = folder.join("dovecot.conf");
    fs::write(&config, text).expect("writing dovecot.conf");
    config
}

/// The mail owner: `nobody` when the tests run as root, the current user otherwise.
fn mail_owner() -> MailOwner {
    let internal_user = id(&["-un"]);
    if id(&["-u"]) == "0" {
        return MailOwner {
            uid: number(&id(&["-u", "nobody"])),
            gid: number(&id(&["-g", "nobody"])),
            internal_user,
        };
    }
    MailOwner {
        uid: number(&id(&["-u"])),
        gid: number(&id(&["-g"])),
        internal_user,
    }
}

/// The current user's group name, for Dovecot's services.
fn internal_group() -> String {
    id(&["-gn"])
}

fn id(args: &[&str]) -> String {
    let output = Command::new("id").args(args).output().expect("running id");
    assert!(output.status.success(), "id {args:?} failed");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

fn number(text: &str) -> u32 {
    text.parse()
        .unwrap_or_else(|e| panic!("reading id {text:?}: {e}"))
}

/// `chown -R` to the owner, without following symlinks.
fn hand_over_tree(path: &Path, owner: &MailOwner) {
    std::os::unix::fs::lchown(path, Some(owner.uid), Some(owner.gid))
        .unwrap_or_else(|e| panic!("handing {} to the mail owner: {e}", path.display()));
    let Ok(metadata) = fs::symlink_metadata(path) else {
        return;
    };
    if metadata.is_dir() {
        for entry in fs::read_dir(path)
            .expect("listing a folder to hand over")
            .flatten()
        {
            hand_over_tree(&entry.path(), owner);
        }
    }
}
