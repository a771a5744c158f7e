//! Linux for `cargo xtask bench --kernel --linux`: Debian's kernel, a busybox initramfs made here
//! (cpio "newc", written by [`Cpio`]) holding kbench built for Linux (`gcc -static
//! -DKBENCH_LINUX`), the modules the disk needs and an init script, and a fresh ext2 disk on the
//! same IDE controller for each boot. Init loads the modules, mounts the disk at /mnt, runs
//! kbench there and powers off.

use crate::util::{self, errln, fail, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Modules the benchmark needs beyond what Debian builds in: the PIIX IDE controller, SCSI disks,
/// and ext4 (which serves ext2) with the crc32c it asks the crypto API for at mount.
const MODULES: [&str; 4] = ["ata_piix", "sd_mod", "crc32c_generic", "ext4"];
/// Size of the ext2 disk, in 1 KiB blocks: as large as xv6's image makes no difference to a
/// benchmark that uses a few MiB; 32 MiB leaves ext2 its usual layout.
const DISK_BLOCKS: u64 = 32 * 1024;

/// A prepared Linux system.
#[derive(Debug)]
pub struct Linux {
    vmlinuz: PathBuf,
    initramfs: PathBuf,
}

fn install_hint(package: &str) -> String {
    format!("install it with: sudo apt-get update && sudo apt-get install -y {package}")
}

/// Installs Debian packages with apt-get when running as root; otherwise an error naming them.
fn apt_install(packages: &[&str], why: &str) -> Result<()> {
    if !(util::is_root() && util::on_path("apt-get")) {
        return Err(fail!("{why}; {}", install_hint(&packages.join(" "))));
    }
    errln!("{why}: installing {} with apt-get", packages.join(" "));
    util::run(Command::new("apt-get").args(["update", "-q"]))?;
    util::run(
        Command::new("apt-get")
            .args(["install", "-y", "-q"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// The newest /boot/vmlinuz-VERSION and its VERSION.
fn find_kernel() -> Option<(PathBuf, String)> {
    let mut found: Vec<(PathBuf, String)> = std::fs::read_dir("/boot")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let ver = name.strip_prefix("vmlinuz-")?.to_string();
            Path::new("/lib/modules")
                .join(&ver)
                .join("modules.dep")
                .is_file()
                .then(|| (e.path(), ver))
        })
        .collect();
    found.sort_by(|a, b| a.1.cmp(&b.1));
    found.pop()
}

/// True when `path` is an ELF file without an interpreter (statically linked).
fn is_static_elf(path: &Path) -> bool {
    let Ok(b) = std::fs::read(path) else {
        return false;
    };
    if b.get(..4) != Some(b"\x7fELF") || b.get(4) != Some(&2) {
        return false;
    }
    let rd = |o: usize, n: usize| -> Option<u64> {
        let s = b.get(o..o + n)?;
        Some(s.iter().rev().fold(0u64, |a, &x| a << 8 | u64::from(x)))
    };
    let (Some(phoff), Some(phentsize), Some(phnum)) = (rd(32, 8), rd(54, 2), rd(56, 2)) else {
        return false;
    };
    (0..phnum).all(|i| rd((phoff + i * phentsize) as usize, 4) != Some(3))
}

/// A static busybox: Debian's busybox-static installs it as /bin/busybox.
fn find_busybox() -> Option<PathBuf> {
    ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| is_static_elf(p))
}

/// The modules `wanted` need, dependencies first, as paths relative to the modules directory,
/// from the text of `modules.dep` (`path: dep dep ...`, each line's dependencies listed so that
/// the last must be loaded first).
pub fn resolve_modules(dep: &str, wanted: &[&str]) -> Result<Vec<String>> {
    let mut deps: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    for line in dep.lines() {
        let Some((path, rest)) = line.split_once(':') else {
            continue;
        };
        let name = module_name(path);
        let list = rest.split_whitespace().map(str::to_string).collect();
        deps.insert(name, (path.to_string(), list));
    }
    let mut order = Vec::new();
    for w in wanted {
        let (path, list) = deps
            .get(*w)
            .ok_or_else(|| fail!("module {w} not in modules.dep"))?;
        for p in list.iter().rev().chain(std::iter::once(path)) {
            if !order.contains(p) {
                order.push(p.clone());
            }
        }
    }
    Ok(order)
}

/// `kernel/drivers/ata/ata_piix.ko` → `ata_piix` (dashes and underscores are one to modprobe).
fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let base = file.split(".ko").next().unwrap_or(file);
    base.replace('-', "_")
}

/// A cpio archive in the "newc" format the kernel unpacks as its initramfs.
#[derive(Debug, Default)]
pub struct Cpio {
    data: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), body: &[u8]) {
        self.ino += 1;
        let fields = [
            self.ino,
            mode,
            0, // uid
            0, // gid
            1, // nlink
            0, // mtime
            body.len() as u32,
            0, // devmajor
            0, // devminor
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0, // check
        ];
        self.data.extend_from_slice(b"070701");
        for f in fields {
            self.data.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        self.data.extend_from_slice(name.as_bytes());
        self.data.push(0);
        self.pad();
        self.data.extend_from_slice(body);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.data.len().is_multiple_of(4) {
            self.data.push(0);
        }
    }

    pub fn dir(&mut self, name: &str) {
        self.entry(name, 0o040755, (0, 0), &[]);
    }

    pub fn file(&mut self, name: &str, mode: u32, body: &[u8]) {
        self.entry(name, 0o100000 | mode, (0, 0), body);
    }

    pub fn char_device(&mut self, name: &str, major: u32, minor: u32) {
        self.entry(name, 0o020600, (major, minor), &[]);
    }

    /// The archive, closed with its trailer.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        self.data
    }
}

/// The init script: modules, the disk at /mnt, kbench, power off.
pub fn init_script(modules: &[String], args: &[String]) -> String {
    let mods: Vec<String> = modules
        .iter()
        .map(|m| m.rsplit('/').next().unwrap_or(m).to_string())
        .collect();
    format!(
        "#!/bin/busybox sh\n\
         /bin/busybox --install -s /bin\n\
         export PATH=/bin\n\
         mount -t proc proc /proc\n\
         mount -t sysfs sysfs /sys\n\
         mount -t devtmpfs devtmpfs /dev\n\
         for m in {mods}; do insmod /lib/modules/$m || echo \"kbench-init: insmod $m failed\"; done\n\
         i=0\n\
         while [ ! -b /dev/sda ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done\n\
         if mount -t ext2 /dev/sda /mnt; then\n\
         \tcd /mnt && /kbench {args}\n\
         \tcd /\n\
         \tumount /mnt\n\
         else\n\
         \techo \"kbench: FAILED: cannot mount /dev/sda\"\n\
         \tls -l /dev/sda /mnt; grep ext /proc/filesystems; dmesg | tail -n 5\n\
         fi\n\
         sync\n\
         poweroff -f\n",
        mods = mods.join(" "),
        args = args.join(" ")
    )
}

impl Linux {
    /// Finds (or installs) the kernel and busybox, builds kbench for Linux and the initramfs in
    /// `out/linux`, with kbench's arguments `args` in its init script.
    pub fn prepare(out: &Path, args: &[String]) -> Result<Linux> {
        let kernel = match find_kernel() {
            Some(k) => k,
            None => {
                apt_install(&["linux-image-amd64"], "no Linux kernel in /boot")?;
                find_kernel().ok_or_else(|| fail!("apt-get installed no kernel in /boot"))?
            }
        };
        let busybox = match find_busybox() {
            Some(b) => b,
            None => {
                apt_install(&["busybox-static"], "no static busybox")?;
                find_busybox().ok_or_else(|| fail!("busybox-static installed no /bin/busybox"))?
            }
        };
        if !util::on_path("mkfs.ext2") && !Path::new("/sbin/mkfs.ext2").is_file() {
            apt_install(&["e2fsprogs"], "no mkfs.ext2")?;
        }
        let (vmlinuz, version) = kernel;
        errln!("linux: {} with {}", vmlinuz.display(), busybox.display());
        let dir = out.join("linux");
        std::fs::create_dir_all(&dir)?;

        let kbench = dir.join("kbench");
        let src = util::root().join("crates/xv6-user/c/kbench.c");
        let gcc = std::env::var("CC").unwrap_or_else(|_| "gcc".into());
        let mut c = Command::new(&gcc);
        c.args(["-static", "-O2", "-Wall", "-DKBENCH_LINUX", "-o"])
            .arg(&kbench)
            .arg(&src);
        util::run(&mut c).map_err(|e| {
            fail!(
                "{e}: building kbench for Linux needs gcc and a static C library ({})",
                install_hint("gcc libc6-dev")
            )
        })?;

        let moddir = Path::new("/lib/modules").join(&version);
        let dep = std::fs::read_to_string(moddir.join("modules.dep"))?;
        let modules = resolve_modules(&dep, &MODULES)?;

        let mut cpio = Cpio::default();
        for d in ["bin", "dev", "proc", "sys", "mnt", "lib", "lib/modules"] {
            cpio.dir(d);
        }
        cpio.char_device("dev/console", 5, 1);
        cpio.file("bin/busybox", 0o755, &std::fs::read(&busybox)?);
        cpio.file("kbench", 0o755, &std::fs::read(&kbench)?);
        for m in &modules {
            let file = m.rsplit('/').next().unwrap_or(m);
            let body = std::fs::read(moddir.join(m))
                .map_err(|e| fail!("reading module {}: {e}", moddir.join(m).display()))?;
            cpio.file(&format!("lib/modules/{file}"), 0o644, &body);
        }
        cpio.file("init", 0o755, init_script(&modules, args).as_bytes());
        let initramfs = dir.join("initramfs.cpio");
        std::fs::write(&initramfs, cpio.finish())?;
        Ok(Linux { vmlinuz, initramfs })
    }

    /// A new, empty ext2 disk for one boot (the caller removes it).
    pub fn fresh_disk(&self, out: &Path) -> Result<PathBuf> {
        let disk = out.join(format!("linux/ext2-{}.img", std::process::id()));
        let _ = std::fs::remove_file(&disk);
        std::fs::File::create(&disk)?.set_len(DISK_BLOCKS * 1024)?;
        let mkfs = if util::on_path("mkfs.ext2") {
            "mkfs.ext2".into()
        } else {
            "/sbin/mkfs.ext2".to_string()
        };
        let out = Command::new(mkfs)
            .args(["-q", "-F", "-b", "1024"])
            .arg(&disk)
            .output()?;
        if !out.status.success() {
            return Err(fail!(
                "mkfs.ext2 {} failed: {}",
                disk.display(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(disk)
    }

    /// The kernel, initramfs and command line.
    pub fn add_args(&self, c: &mut Command) {
        c.arg("-kernel")
            .arg(&self.vmlinuz)
            .arg("-initrd")
            .arg(&self.initramfs)
            .args(["-append", "console=ttyS0 quiet loglevel=3 panic=-1"]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_come_after_their_dependencies() {
        let dep = "kernel/fs/mbcache.ko:\n\
                   kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko\n\
                   kernel/fs/jbd2/jbd2.ko:\n\
                   kernel/lib/crc16.ko:\n\
                   kernel/drivers/scsi/scsi_mod.ko: kernel/drivers/scsi/scsi_common.ko\n\
                   kernel/drivers/ata/ata_piix.ko: kernel/drivers/ata/libata.ko kernel/drivers/scsi/scsi_mod.ko kernel/drivers/scsi/scsi_common.ko\n";
        let m = resolve_modules(dep, &["ata_piix", "ext4"]).unwrap();
        assert_eq!(
            m,
            [
                "kernel/drivers/scsi/scsi_common.ko",
                "kernel/drivers/scsi/scsi_mod.ko",
                "kernel/drivers/ata/libata.ko",
                "kernel/drivers/ata/ata_piix.ko",
                "kernel/fs/jbd2/jbd2.ko",
                "kernel/fs/mbcache.ko",
                "kernel/lib/crc16.ko",
                "kernel/fs/ext4/ext4.ko",
            ]
        );
        assert!(resolve_modules(dep, &["nosuch"]).is_err());
        assert_eq!(
            module_name("kernel/lib/crc64-rocksoft.ko"),
            "crc64_rocksoft"
        );
    }

    #[test]
    fn cpio_newc_layout() {
        let mut c = Cpio::default();
        c.file("init", 0o755, b"hello");
        let a = c.finish();
        // Header: magic, 13 fields of 8 hex digits; then "init\0" padded to 4; 5 bytes of data
        // padded to 4; then the trailer.
        assert_eq!(&a[..6], b"070701");
        let field = |i: usize| {
            u32::from_str_radix(std::str::from_utf8(&a[6 + 8 * i..14 + 8 * i]).unwrap(), 16)
                .unwrap()
        };
        assert_eq!(field(1), 0o100755);
        assert_eq!(field(6), 5);
        assert_eq!(field(11), 5);
        assert_eq!(&a[110..115], b"init\0");
        assert_eq!(&a[116..121], b"hello");
        assert_eq!(&a[124..130], b"070701");
        assert_eq!(&a[234..245], b"TRAILER!!!\0");
        assert_eq!(a.len() % 4, 0);
    }

    #[test]
    fn init_runs_kbench_with_its_arguments() {
        let s = init_script(
            &["kernel/drivers/ata/ata_piix.ko".into()],
            &["-t".into(), "2445403".into(), "getpid".into()],
        );
        assert!(s.starts_with("#!/bin/busybox sh\n"));
        assert!(s.contains("for m in ata_piix.ko; do insmod /lib/modules/$m"));
        assert!(s.contains("cd /mnt && /kbench -t 2445403 getpid\n"));
        assert!(s.trim_end().ends_with("poweroff -f"));
    }

    #[test]
    fn static_elf_check() {
        assert!(!is_static_elf(Path::new("/nonexistent")));
        // The test binary itself is dynamically linked.
        let me = std::env::current_exe().unwrap();
        assert!(!is_static_elf(&me));
    }
}
