//! CPUs, memory, block devices and filesystems.

use std::collections::BTreeMap;

use census_shared::{Cpu, Disk, Filesystem, Memory, Section};

use super::ProbeError;

/// Parses /proc/cpuinfo into one [`Cpu`] per physical package.
pub fn parse_cpuinfo(text: &str) -> Vec<Cpu> {
    let mut sockets: BTreeMap<u32, Cpu> = BTreeMap::new();
    for block in text.split("\n\n") {
        let mut fields = BTreeMap::new();
        for line in block.lines() {
            if let Some((k, v)) = line.split_once(':') {
                fields.insert(k.trim(), v.trim());
            }
        }
        if !fields.contains_key("processor") {
            continue;
        }
        let socket = fields
            .get("physical id")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let cpu = sockets.entry(socket).or_insert_with(|| Cpu {
            socket,
            ..Default::default()
        });
        cpu.threads += 1;
        if cpu.vendor.is_none() {
            cpu.vendor = fields.get("vendor_id").map(|v| v.to_string()).or_else(|| {
                fields
                    .get("CPU implementer")
                    .map(|v| arm_implementer(v).to_string())
            });
        }
        if cpu.model.is_none() {
            cpu.model = fields
                .get("model name")
                .or_else(|| fields.get("Model"))
                .or_else(|| fields.get("cpu model"))
                .map(|v| v.to_string());
        }
        if let Some(cores) = fields.get("cpu cores").and_then(|v| v.parse().ok()) {
            cpu.cores = cores;
        }
        if cpu.flags_virtualization.is_none() {
            if let Some(flags) = fields.get("flags") {
                let has = |f: &str| flags.split_whitespace().any(|x| x == f);
                cpu.flags_virtualization = if has("vmx") {
                    Some("vmx".into())
                } else if has("svm") {
                    Some("svm".into())
                } else {
                    None
                };
            }
        }
    }
    for cpu in sockets.values_mut() {
        if cpu.cores == 0 {
            // ARM and some hypervisors omit "cpu cores": every logical CPU is a core.
            cpu.cores = cpu.threads;
        }
    }
    sockets.into_values().collect()
}

fn arm_implementer(code: &str) -> &'static str {
    match code.trim().to_ascii_lowercase().as_str() {
        "0x41" => "ARM",
        "0x42" => "Broadcom",
        "0x43" => "Cavium",
        "0x4e" => "NVIDIA",
        "0x50" => "APM",
        "0x51" => "Qualcomm",
        "0x61" => "Apple",
        "0xc0" => "Ampere",
        _ => "unknown",
    }
}

/// Parses /proc/meminfo (kB values) into bytes.
pub fn parse_meminfo(text: &str) -> Result<Memory, ProbeError> {
    let kb = |key: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':')))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .and_then(|v| v.checked_mul(1024))
    };
    Ok(Memory {
        total_bytes: kb("MemTotal")
            .ok_or_else(|| ProbeError::Parse("meminfo: no MemTotal".into()))?,
        available_bytes: kb("MemAvailable"),
        swap_total_bytes: kb("SwapTotal").unwrap_or(0),
        swap_free_bytes: kb("SwapFree"),
    })
}

/// What sysfs says about one block device.
#[derive(Debug, Default, Clone)]
pub struct BlockFacts {
    pub name: String,
    /// 512-byte sectors, as /sys/block/X/size always counts.
    pub size_sectors: u64,
    pub major: u32,
    pub rotational: Option<bool>,
    pub removable: bool,
    pub model: Option<String>,
    pub vendor: Option<String>,
    pub serial: Option<String>,
    pub wwid: Option<String>,
    /// Driver name of the device (`virtio_blk`, `nvme`, `sd`, ...).
    pub driver: Option<String>,
    /// The resolved sysfs device path (tells USB from SATA).
    pub device_path: Option<String>,
    /// /sys/block/X/loop exists: a loop device with a backing file.
    pub loop_attached: bool,
}

/// A block device as the inventory reports it, or None for what `lsblk` hides by default:
/// RAM disks (major 1) and loop devices with nothing attached.
pub fn disk_from_facts(f: &BlockFacts) -> Option<Disk> {
    if f.major == 1 {
        return None;
    }
    let is_loop = f.name.starts_with("loop") || f.major == 7;
    if is_loop && (!f.loop_attached || f.size_sectors == 0) {
        return None;
    }
    let path = f.device_path.as_deref().unwrap_or("");
    let transport = if is_loop {
        Some("loop")
    } else if f.name.starts_with("zram") {
        Some("zram")
    } else if f.name.starts_with("nvme") {
        Some("nvme")
    } else if path.contains("/usb") {
        Some("usb")
    } else if f.driver.as_deref() == Some("virtio_blk") || f.name.starts_with("vd") {
        Some("virtio")
    } else if path.contains("/ata") {
        Some("sata")
    } else if f.name.starts_with("mmcblk") {
        Some("mmc")
    } else if f.name.starts_with("sd") {
        Some("scsi")
    } else {
        None
    };
    // virtio reports its PCI vendor id ("0x1af4") where SCSI devices report a name.
    let vendor = f.vendor.clone().filter(|v| !v.starts_with("0x"));
    Some(Disk {
        name: f.name.clone(),
        model: census_shared::identity::meaningful(f.model.as_deref()),
        vendor: census_shared::identity::meaningful(vendor.as_deref()),
        serial: census_shared::identity::meaningful(f.serial.as_deref()),
        wwn: census_shared::identity::meaningful(f.wwid.as_deref()),
        size_bytes: f.size_sectors.saturating_mul(512),
        rotational: f.rotational,
        removable: f.removable,
        transport: transport.map(str::to_string),
    })
}

/// One line of /proc/self/mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub device_id: String,
    pub root: String,
    pub mount_point: String,
    pub options: String,
    pub fs_type: String,
    pub source: String,
}

/// Decodes mountinfo's octal escapes (`\040` for a space). Works on bytes: a backslash
/// may be followed by anything, including part of a multi-byte UTF-8 character.
fn unescape_octal(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if let Some(digits) = bytes.get(i + 1..i + 4) {
                if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                    let value = digits
                        .iter()
                        .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                    if let Ok(v) = u8::try_from(value) {
                        out.push(v);
                        i += 4;
                        continue;
                    }
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let l: Vec<&str> = left.split_whitespace().collect();
            let r: Vec<&str> = right.split_whitespace().collect();
            if l.len() < 6 || r.len() < 2 {
                return None;
            }
            Some(MountEntry {
                device_id: l[2].to_string(),
                root: unescape_octal(l[3]),
                mount_point: unescape_octal(l[4]),
                options: l[5].to_string(),
                fs_type: r[0].to_string(),
                source: unescape_octal(r[1]),
            })
        })
        .collect()
}

const STORAGE_FS: &[&str] = &[
    "ext2",
    "ext3",
    "ext4",
    "xfs",
    "btrfs",
    "zfs",
    "vfat",
    "exfat",
    "ntfs",
    "ntfs3",
    "fuseblk",
    "f2fs",
    "jfs",
    "reiserfs",
    "hfsplus",
    "apfs",
    "iso9660",
    "udf",
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "ceph",
    "glusterfs",
    "bcachefs",
];

/// Keeps the mounts that are storage (not proc, cgroup, tmpfs, squashfs snaps...), one
/// entry per filesystem (device id), so bind mounts do not repeat it.
pub fn storage_mounts(entries: &[MountEntry]) -> Vec<&MountEntry> {
    let mut seen = std::collections::BTreeSet::new();
    entries
        .iter()
        .filter(|e| {
            STORAGE_FS.contains(&e.fs_type.as_str())
                || (e.fs_type == "overlay" && e.mount_point == "/")
        })
        .filter(|e| seen.insert(e.device_id.as_str()))
        .collect()
}

#[cfg(target_os = "linux")]
pub fn collect_cpus() -> Result<Section<Vec<Cpu>>, ProbeError> {
    let mut cpus = parse_cpuinfo(&super::read_text("/proc/cpuinfo")?);
    let max_khz = super::read_attr("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
        .and_then(|v| v.parse::<u64>().ok());
    for cpu in &mut cpus {
        cpu.max_mhz = max_khz.map(|k| k / 1000);
    }
    Ok(Section::collected(cpus))
}

#[cfg(target_os = "linux")]
pub fn collect_memory() -> Result<Section<Memory>, ProbeError> {
    Ok(Section::collected(parse_meminfo(&super::read_text(
        "/proc/meminfo",
    )?)?))
}

#[cfg(target_os = "linux")]
pub fn collect_disks() -> Result<Section<Vec<Disk>>, ProbeError> {
    use super::read_attr;
    let dir = std::path::Path::new("/sys/block");
    let entries = std::fs::read_dir(dir).map_err(|source| ProbeError::Read {
        path: "/sys/block".into(),
        source,
    })?;
    let mut disks = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let base = dir.join(&name);
        let dev = base.join("device");
        let facts = BlockFacts {
            size_sectors: read_attr(base.join("size"))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            major: read_attr(base.join("dev"))
                .and_then(|v| v.split(':').next().and_then(|m| m.parse().ok()))
                .unwrap_or(0),
            rotational: read_attr(base.join("queue/rotational")).map(|v| v == "1"),
            removable: read_attr(base.join("removable")).is_some_and(|v| v == "1"),
            model: read_attr(dev.join("model")),
            vendor: read_attr(dev.join("vendor")),
            serial: read_attr(dev.join("serial")).or_else(|| read_attr(base.join("serial"))),
            wwid: read_attr(dev.join("wwid")).or_else(|| read_attr(base.join("wwid"))),
            driver: std::fs::read_link(dev.join("driver"))
                .ok()
                .and_then(|p| p.file_name().map(|f| f.to_string_lossy().into_owned())),
            device_path: std::fs::canonicalize(&dev)
                .ok()
                .map(|p| p.to_string_lossy().into_owned()),
            loop_attached: base.join("loop").exists(),
            name,
        };
        if let Some(disk) = disk_from_facts(&facts) {
            disks.push(disk);
        }
    }
    disks.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Section::collected(disks))
}

#[cfg(target_os = "linux")]
pub fn collect_filesystems() -> Result<Section<Vec<Filesystem>>, ProbeError> {
    let entries = parse_mountinfo(&super::read_text("/proc/self/mountinfo")?);
    let mut out = Vec::new();
    for e in storage_mounts(&entries) {
        // Container runtimes bind single files (/etc/hosts) from the host disk: not a mount
        // a person would call a filesystem.
        if !std::path::Path::new(&e.mount_point).is_dir() {
            continue;
        }
        let (total, free) = statvfs(&e.mount_point).unwrap_or((0, None));
        out.push(Filesystem {
            mount_point: e.mount_point.clone(),
            device: e.source.clone(),
            fs_type: e.fs_type.clone(),
            total_bytes: total,
            free_bytes: free,
            read_only: e.options.split(',').any(|o| o == "ro"),
        });
    }
    Ok(Section::collected(out))
}

#[cfg(unix)]
fn statvfs(path: &str) -> Option<(u64, Option<u64>)> {
    let c = std::ffi::CString::new(path).ok()?;
    // SAFETY: statvfs writes into a zeroed struct from a valid NUL-terminated path.
    unsafe {
        let mut s: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut s) != 0 {
            return None;
        }
        let frsize = s.f_frsize as u64;
        Some((s.f_blocks as u64 * frsize, Some(s.f_bavail as u64 * frsize)))
    }
}

#[cfg(not(target_os = "linux"))]
pub fn collect_cpus() -> Result<Section<Vec<Cpu>>, ProbeError> {
    let sys = sysinfo::System::new_with_specifics(
        sysinfo::RefreshKind::nothing().with_cpu(sysinfo::CpuRefreshKind::everything()),
    );
    let first = sys.cpus().first();
    Ok(Section::collected(vec![Cpu {
        socket: 0,
        vendor: first.map(|c| c.vendor_id().to_string()),
        model: first.map(|c| c.brand().trim().to_string()),
        cores: sys.physical_core_count().unwrap_or(sys.cpus().len()) as u32,
        threads: sys.cpus().len() as u32,
        max_mhz: first.map(|c| c.frequency()),
        flags_virtualization: None,
    }]))
}

#[cfg(not(target_os = "linux"))]
pub fn collect_memory() -> Result<Section<Memory>, ProbeError> {
    let sys = sysinfo::System::new_with_specifics(
        sysinfo::RefreshKind::nothing().with_memory(sysinfo::MemoryRefreshKind::everything()),
    );
    Ok(Section::collected(Memory {
        total_bytes: sys.total_memory(),
        available_bytes: Some(sys.available_memory()),
        swap_total_bytes: sys.total_swap(),
        swap_free_bytes: Some(sys.free_swap()),
    }))
}

#[cfg(not(target_os = "linux"))]
pub fn collect_disks() -> Result<Section<Vec<Disk>>, ProbeError> {
    Ok(Section::unsupported(
        "block device probe exists for Linux only",
    ))
}

#[cfg(not(target_os = "linux"))]
pub fn collect_filesystems() -> Result<Section<Vec<Filesystem>>, ProbeError> {
    Ok(Section::unsupported(
        "filesystem probe exists for Linux only",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuinfo_two_sockets_with_hyperthreads() {
        let cpus = parse_cpuinfo(include_str!("../../fixtures/cpuinfo-2socket"));
        assert_eq!(cpus.len(), 2);
        assert_eq!(cpus[0].cores, 2);
        assert_eq!(cpus[0].threads, 4);
        assert_eq!(cpus[1].socket, 1);
        assert_eq!(cpus[0].vendor.as_deref(), Some("GenuineIntel"));
        assert_eq!(cpus[0].flags_virtualization.as_deref(), Some("vmx"));
        assert!(cpus[0].model.as_deref().unwrap().contains("Xeon"));
    }

    #[test]
    fn cpuinfo_arm_without_physical_id() {
        let text = "processor\t: 0\nBogoMIPS\t: 48.00\nCPU implementer\t: 0x41\n\nprocessor\t: 1\nCPU implementer\t: 0x41\n\nHardware\t: BCM2835\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n";
        let cpus = parse_cpuinfo(text);
        assert_eq!(cpus.len(), 1);
        assert_eq!(cpus[0].threads, 2);
        assert_eq!(cpus[0].cores, 2);
        assert_eq!(cpus[0].vendor.as_deref(), Some("ARM"));
    }

    #[test]
    fn meminfo_kib_overflow_is_refused_not_a_panic() {
        // Found by the proc_files fuzz target: 2922222222222222222 kB * 1024 overflowed u64.
        let err = parse_meminfo("MemTotal:  \x0c\x0b2922222222222222222 kB\n");
        assert!(err.is_err(), "an impossible MemTotal is no MemTotal");
        let d = disk_from_facts(&BlockFacts {
            name: "sda".into(),
            major: 8,
            size_sectors: u64::MAX,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(d.size_bytes, u64::MAX);
    }

    #[test]
    fn meminfo_in_bytes() {
        let m =
            parse_meminfo("MemTotal:       24684092 kB\nMemAvailable:   100 kB\nSwapTotal: 0 kB\n")
                .unwrap();
        assert_eq!(m.total_bytes, 24684092 * 1024);
        assert_eq!(m.available_bytes, Some(102400));
        assert!(parse_meminfo("nothing").is_err());
    }

    #[test]
    fn lsblk_default_visibility() {
        let empty_loop = BlockFacts {
            name: "loop0".into(),
            major: 7,
            ..Default::default()
        };
        assert!(disk_from_facts(&empty_loop).is_none());
        let snap_loop = BlockFacts {
            name: "loop1".into(),
            major: 7,
            size_sectors: 100,
            loop_attached: true,
            ..Default::default()
        };
        assert_eq!(
            disk_from_facts(&snap_loop).unwrap().transport.as_deref(),
            Some("loop")
        );
        let ram = BlockFacts {
            name: "ram0".into(),
            major: 1,
            size_sectors: 100,
            ..Default::default()
        };
        assert!(disk_from_facts(&ram).is_none());
        let zram = BlockFacts {
            name: "zram0".into(),
            major: 253,
            ..Default::default()
        };
        assert!(disk_from_facts(&zram).is_some());
    }

    #[test]
    fn disk_facts_to_disk() {
        let usb = BlockFacts {
            name: "sdb".into(),
            major: 8,
            size_sectors: 2 * 1024 * 1024,
            removable: true,
            model: Some("Ultra Fit".into()),
            vendor: Some("SanDisk ".into()),
            serial: Some("Default string".into()),
            device_path: Some(
                "/sys/devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0"
                    .into(),
            ),
            ..Default::default()
        };
        let d = disk_from_facts(&usb).unwrap();
        assert_eq!(d.size_bytes, 1024 * 1024 * 1024);
        assert_eq!(d.transport.as_deref(), Some("usb"));
        assert_eq!(d.vendor.as_deref(), Some("SanDisk"));
        assert_eq!(d.serial, None);
        let virtio = BlockFacts {
            name: "vda".into(),
            major: 254,
            vendor: Some("0x1af4".into()),
            driver: Some("virtio_blk".into()),
            ..Default::default()
        };
        let d = disk_from_facts(&virtio).unwrap();
        assert_eq!(d.vendor, None);
        assert_eq!(d.transport.as_deref(), Some("virtio"));
    }

    #[test]
    fn unescape_octal_does_not_panic_on_multibyte_after_backslash() {
        // The old str slicing panicked here: byte i+4 falls inside the second 'é'.
        assert_eq!(unescape_octal("x\\éé"), "x\\éé");
        assert_eq!(unescape_octal("/mnt/a\\é/b"), "/mnt/a\\é/b");
        assert_eq!(unescape_octal("/media/usb\\040stick"), "/media/usb stick");
        assert_eq!(unescape_octal("tail\\04"), "tail\\04");
        assert_eq!(
            unescape_octal("\\777"),
            "\\777",
            "out of byte range stays literal"
        );
    }

    #[test]
    fn mountinfo_storage_only_and_escapes() {
        let entries = parse_mountinfo(include_str!("../../fixtures/mountinfo"));
        let storage = storage_mounts(&entries);
        let points: Vec<&str> = storage.iter().map(|e| e.mount_point.as_str()).collect();
        assert_eq!(
            points,
            vec!["/", "/boot/efi", "/home", "/media/usb stick", "/mnt/nas"]
        );
        assert_eq!(storage[0].source, "/dev/nvme0n1p2");
        assert!(storage[3].options.contains("ro"));
    }
}
