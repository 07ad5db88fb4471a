//! System identity: DMI/SMBIOS, machine-id, and virtualization / container detection that
//! agrees with `systemd-detect-virt --vm` and `--container`.

use std::collections::BTreeMap;

use census_shared::identity::meaningful;
use census_shared::{Section, System};

use super::ProbeError;

/// One DMI attribute as read from /sys/class/dmi/id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldRead {
    Value(String),
    Missing,
    /// Exists but the agent's user may not read it (serials and UUID are root-only).
    Denied,
}

/// DMI attribute file names and the System field each fills.
pub const DMI_FIELDS: &[(&str, &str)] = &[
    ("sys_vendor", "vendor"),
    ("product_name", "model"),
    ("product_family", "family"),
    ("product_serial", "serial"),
    ("product_uuid", "uuid"),
    ("product_sku", "sku"),
    ("chassis_type", "chassis_type"),
    ("board_vendor", "board_vendor"),
    ("board_name", "board_model"),
    ("board_serial", "board_serial"),
    ("bios_vendor", "bios_vendor"),
    ("bios_version", "bios_version"),
    ("bios_date", "bios_date"),
];

/// SMBIOS chassis types (DSP0134 7.4.1).
pub fn chassis_name(code: &str) -> Option<&'static str> {
    let name = match code.trim().parse::<u32>().ok()? {
        1 => "Other",
        3 => "Desktop",
        4 => "Low Profile Desktop",
        5 => "Pizza Box",
        6 => "Mini Tower",
        7 => "Tower",
        8 => "Portable",
        9 => "Laptop",
        10 => "Notebook",
        11 => "Hand Held",
        12 => "Docking Station",
        13 => "All in One",
        14 => "Sub Notebook",
        15 => "Space-saving",
        16 => "Lunch Box",
        17 => "Main Server Chassis",
        18 => "Expansion Chassis",
        19 => "SubChassis",
        20 => "Bus Expansion Chassis",
        21 => "Peripheral Chassis",
        22 => "RAID Chassis",
        23 => "Rack Mount Chassis",
        24 => "Sealed-case PC",
        25 => "Multi-system Chassis",
        26 => "Compact PCI",
        27 => "Advanced TCA",
        28 => "Blade",
        29 => "Blade Enclosure",
        30 => "Tablet",
        31 => "Convertible",
        32 => "Detachable",
        33 => "IoT Gateway",
        34 => "Embedded PC",
        35 => "Mini PC",
        36 => "Stick PC",
        _ => return None, // 2 is "Unknown": as good as absent.
    };
    Some(name)
}

/// Builds the System section from DMI reads; placeholders become None, and fields the agent
/// could not read are listed in `restricted`.
pub fn parse_dmi(reads: &BTreeMap<&str, FieldRead>, machine_id: Option<&str>) -> System {
    let mut system = System::default();
    for (file, field) in DMI_FIELDS {
        let value = match reads.get(file) {
            Some(FieldRead::Value(v)) => v.as_str(),
            Some(FieldRead::Denied) => {
                system.restricted.push((*field).to_string());
                continue;
            }
            _ => continue,
        };
        let value = if *file == "chassis_type" {
            chassis_name(value).map(str::to_string)
        } else if *file == "product_uuid" {
            meaningful(Some(value)).map(|u| u.to_ascii_lowercase())
        } else {
            meaningful(Some(value))
        };
        let slot = match *field {
            "vendor" => &mut system.vendor,
            "model" => &mut system.model,
            "family" => &mut system.family,
            "serial" => &mut system.serial,
            "uuid" => &mut system.uuid,
            "sku" => &mut system.sku,
            "chassis_type" => &mut system.chassis_type,
            "board_vendor" => &mut system.board_vendor,
            "board_model" => &mut system.board_model,
            "board_serial" => &mut system.board_serial,
            "bios_vendor" => &mut system.bios_vendor,
            "bios_version" => &mut system.bios_version,
            _ => &mut system.bios_date,
        };
        *slot = value;
    }
    system.machine_id = meaningful(machine_id);
    system
}

/// Everything systemd-detect-virt looks at to name a hypervisor.
#[derive(Debug, Default, Clone)]
pub struct VmEvidence {
    /// DMI product_name, sys_vendor, board_vendor, bios_vendor, product_version (in that order).
    pub dmi: Vec<String>,
    /// CPUID leaf 0x40000000 vendor signature, when the hypervisor bit is set.
    pub cpuid_vendor: Option<String>,
    /// The hypervisor bit of CPUID leaf 1 (also the "hypervisor" flag in /proc/cpuinfo).
    pub hypervisor_flag: bool,
    /// /sys/hypervisor/type.
    pub sys_hypervisor_type: Option<String>,
    /// /proc/xen exists with "control_d" absent from its capabilities (a Xen domU).
    pub xen_domu: bool,
    /// /proc/device-tree/hypervisor/compatible (ARM).
    pub device_tree_hypervisor: Option<String>,
}

fn dmi_vendor(value: &str) -> Option<&'static str> {
    const TABLE: &[(&str, &str)] = &[
        ("KVM", "kvm"),
        ("OpenStack", "kvm"),
        ("KubeVirt", "kvm"),
        ("Amazon EC2", "amazon"),
        ("QEMU", "qemu"),
        ("VMware", "vmware"),
        ("VMW", "vmware"),
        ("innotek GmbH", "oracle"),
        ("VirtualBox", "oracle"),
        ("Xen", "xen"),
        ("Bochs", "bochs"),
        ("Parallels", "parallels"),
        ("BHYVE", "bhyve"),
        ("Hyper-V", "microsoft"),
        ("Apple Virtualization", "apple"),
        ("Google Compute Engine", "google"),
    ];
    TABLE
        .iter()
        .find(|(prefix, _)| value.starts_with(prefix))
        .map(|(_, name)| *name)
}

fn cpuid_vendor(signature: &str) -> &'static str {
    match signature.trim_end_matches('\0') {
        "XenVMMXenVMM" => "xen",
        "KVMKVMKVM" | "Linux KVM Hv" => "kvm",
        "TCGTCGTCGTCG" => "qemu",
        "VMwareVMware" => "vmware",
        "Microsoft Hv" => "microsoft",
        "bhyve bhyve " | "bhyve bhyve" => "bhyve",
        "QNXQVMBSQG" => "qnx",
        "ACRNACRNACRN" => "acrn",
        "SRESRESRESRE" => "sre",
        "Apple VZ" => "apple",
        _ => "vm-other",
    }
}

/// Names the hypervisor as `systemd-detect-virt --vm` does (same order of evidence: DMI for
/// vendors that hide behind KVM, then CPUID, then DMI, then the hypervisor flag).
pub fn detect_vm(e: &VmEvidence) -> Option<String> {
    let dmi = e.dmi.iter().find_map(|v| dmi_vendor(v));
    let microsoft_dmi = e.dmi.len() >= 2
        && e.dmi[1].starts_with("Microsoft Corporation")
        && e.dmi[0].starts_with("Virtual Machine");
    let dmi = dmi.or(microsoft_dmi.then_some("microsoft"));
    if let Some(v @ ("oracle" | "xen" | "amazon" | "parallels")) = dmi {
        return Some(v.into());
    }
    if e.xen_domu {
        return Some("xen".into());
    }
    let cpuid = e.cpuid_vendor.as_deref().map(cpuid_vendor);
    if let Some(v) = cpuid.filter(|v| *v != "vm-other") {
        return Some(v.into());
    }
    if let Some(v) = dmi {
        return Some(v.into());
    }
    if let Some(dt) = &e.device_tree_hypervisor {
        if dt.contains("linux,kvm") {
            return Some("kvm".into());
        }
        if dt.contains("xen") {
            return Some("xen".into());
        }
        return Some("vm-other".into());
    }
    if let Some(t) = &e.sys_hypervisor_type {
        if t.trim() == "xen" {
            return Some("xen".into());
        }
        return Some("vm-other".into());
    }
    if cpuid.is_some() || e.hypervisor_flag {
        return Some("vm-other".into());
    }
    None
}

/// Everything systemd-detect-virt looks at to name a container.
#[derive(Debug, Default, Clone)]
pub struct ContainerEvidence {
    pub proc_vz: bool,
    pub proc_bc: bool,
    /// /proc/sys/kernel/osrelease.
    pub kernel_osrelease: String,
    /// /run/host/container-manager, /run/systemd/container, then `container=` of PID 1.
    pub manager_files: Vec<String>,
    pub run_containerenv: bool,
    pub dockerenv: bool,
}

fn container_name(value: &str) -> String {
    match value.trim() {
        v @ ("lxc" | "lxc-libvirt" | "systemd-nspawn" | "docker" | "podman" | "rkt" | "wsl"
        | "proot" | "pouch") => v.into(),
        _ => "container-other".into(),
    }
}

/// Names the container as `systemd-detect-virt --container` does.
pub fn detect_container(e: &ContainerEvidence) -> Option<String> {
    if e.proc_vz && !e.proc_bc {
        return Some("openvz".into());
    }
    if e.kernel_osrelease.contains("Microsoft") || e.kernel_osrelease.contains("WSL") {
        return Some("wsl".into());
    }
    if let Some(v) = e.manager_files.iter().find(|v| !v.trim().is_empty()) {
        return Some(container_name(v));
    }
    if e.run_containerenv {
        return Some("podman".into());
    }
    if e.dockerenv {
        return Some("docker".into());
    }
    None
}

#[cfg(target_os = "linux")]
pub fn collect() -> Result<Section<System>, ProbeError> {
    use std::path::Path;
    let dmi_dir = Path::new("/sys/class/dmi/id");
    let mut reads = BTreeMap::new();
    for (file, _) in DMI_FIELDS {
        let read = match std::fs::read_to_string(dmi_dir.join(file)) {
            Ok(v) => FieldRead::Value(v.trim().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => FieldRead::Denied,
            Err(_) => FieldRead::Missing,
        };
        reads.insert(*file, read);
    }
    let machine_id = super::read_attr("/etc/machine-id")
        .or_else(|| super::read_attr("/var/lib/dbus/machine-id"));
    let mut system = parse_dmi(&reads, machine_id.as_deref());

    let dmi_text = |f: &str| match reads.get(f) {
        Some(FieldRead::Value(v)) => v.clone(),
        _ => super::read_attr(dmi_dir.join(f)).unwrap_or_default(),
    };
    let vm = VmEvidence {
        dmi: [
            "product_name",
            "sys_vendor",
            "board_vendor",
            "bios_vendor",
            "product_version",
        ]
        .iter()
        .map(|f| dmi_text(f))
        .collect(),
        cpuid_vendor: cpuid_hypervisor_vendor(),
        hypervisor_flag: std::fs::read_to_string("/proc/cpuinfo")
            .map(|c| {
                c.lines().any(|l| {
                    l.starts_with("flags") && l.split_whitespace().any(|f| f == "hypervisor")
                })
            })
            .unwrap_or(false),
        sys_hypervisor_type: super::read_attr("/sys/hypervisor/type"),
        xen_domu: super::read_attr("/proc/xen/capabilities")
            .map(|c| !c.contains("control_d"))
            .unwrap_or(false),
        device_tree_hypervisor: super::read_attr("/proc/device-tree/hypervisor/compatible"),
    };
    system.virtualization = detect_vm(&vm);

    let pid1_container = std::fs::read("/proc/1/environ").ok().and_then(|env| {
        env.split(|b| *b == 0)
            .find_map(|kv| kv.strip_prefix(b"container="))
            .map(|v| String::from_utf8_lossy(v).into_owned())
    });
    let container = ContainerEvidence {
        proc_vz: Path::new("/proc/vz").exists(),
        proc_bc: Path::new("/proc/bc").exists(),
        kernel_osrelease: super::read_attr("/proc/sys/kernel/osrelease").unwrap_or_default(),
        manager_files: [
            super::read_attr("/run/host/container-manager"),
            super::read_attr("/run/systemd/container"),
            pid1_container,
        ]
        .into_iter()
        .flatten()
        .collect(),
        run_containerenv: Path::new("/run/.containerenv").exists(),
        dockerenv: Path::new("/.dockerenv").exists(),
    };
    system.container = detect_container(&container);
    Ok(Section::collected(system))
}

/// CPUID leaf 0x40000000's 12-byte vendor signature, when CPUID leaf 1 says a hypervisor is
/// present.
#[cfg(target_arch = "x86_64")]
pub fn cpuid_hypervisor_vendor() -> Option<String> {
    #[allow(unused_unsafe)]
    // SAFETY: CPUID is available on every x86_64 CPU and has no side effects.
    let (leaf1, leaf) = unsafe {
        (
            std::arch::x86_64::__cpuid(1),
            std::arch::x86_64::__cpuid(0x4000_0000),
        )
    };
    if leaf1.ecx & (1 << 31) == 0 {
        return None;
    }
    let mut sig = Vec::with_capacity(12);
    for reg in [leaf.ebx, leaf.ecx, leaf.edx] {
        sig.extend_from_slice(&reg.to_le_bytes());
    }
    Some(
        String::from_utf8_lossy(&sig)
            .trim_end_matches('\0')
            .to_string(),
    )
}

#[cfg(not(target_arch = "x86_64"))]
pub fn cpuid_hypervisor_vendor() -> Option<String> {
    None
}

#[cfg(target_os = "macos")]
pub fn collect() -> Result<Section<System>, ProbeError> {
    super::macos::collect_system()
}

#[cfg(target_os = "windows")]
pub fn collect() -> Result<Section<System>, ProbeError> {
    super::windows::collect_system()
}

#[cfg(not(any(target_os = "linux", target_os = "macos", target_os = "windows")))]
pub fn collect() -> Result<Section<System>, ProbeError> {
    Ok(Section::unsupported("no system probe for this platform"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reads(pairs: &[(&'static str, FieldRead)]) -> BTreeMap<&'static str, FieldRead> {
        pairs.iter().cloned().collect()
    }

    #[test]
    fn placeholder_dmi_values_are_dropped() {
        let r = reads(&[
            (
                "sys_vendor",
                FieldRead::Value("Micro-Star International Co., Ltd.".into()),
            ),
            (
                "product_name",
                FieldRead::Value("To Be Filled By O.E.M.".into()),
            ),
            ("product_serial", FieldRead::Value("Default string".into())),
            (
                "product_uuid",
                FieldRead::Value("03000200-0400-0500-0006-000700080009".into()),
            ),
            ("chassis_type", FieldRead::Value("3".into())),
            ("board_serial", FieldRead::Value("0".into())),
            ("bios_version", FieldRead::Value("1.A0".into())),
        ]);
        let s = parse_dmi(&r, Some("3d1219c7c4c5404aaa1f6d2a48adfda4\n"));
        assert_eq!(
            s.vendor.as_deref(),
            Some("Micro-Star International Co., Ltd.")
        );
        assert_eq!(s.model, None);
        assert_eq!(s.serial, None);
        assert_eq!(s.uuid, None);
        assert_eq!(s.board_serial, None);
        assert_eq!(s.chassis_type.as_deref(), Some("Desktop"));
        assert_eq!(s.bios_version.as_deref(), Some("1.A0"));
        assert_eq!(
            s.machine_id.as_deref(),
            Some("3d1219c7c4c5404aaa1f6d2a48adfda4")
        );
    }

    #[test]
    fn unreadable_fields_are_listed_as_restricted() {
        let r = reads(&[
            ("sys_vendor", FieldRead::Value("LENOVO".into())),
            ("product_serial", FieldRead::Denied),
            ("product_uuid", FieldRead::Denied),
            ("board_serial", FieldRead::Denied),
            ("product_name", FieldRead::Value("20XWCTO1WW".into())),
        ]);
        let s = parse_dmi(&r, None);
        assert_eq!(s.restricted, vec!["serial", "uuid", "board_serial"]);
        assert_eq!(s.model.as_deref(), Some("20XWCTO1WW"));
    }

    #[test]
    fn uuid_is_lower_cased() {
        let r = reads(&[(
            "product_uuid",
            FieldRead::Value("4C4C4544-0042-3510-8051-B4C04F4E4B32".into()),
        )]);
        assert_eq!(
            parse_dmi(&r, None).uuid.as_deref(),
            Some("4c4c4544-0042-3510-8051-b4c04f4e4b32")
        );
    }

    #[test]
    fn vm_detection_follows_systemd_order() {
        // VirtualBox uses KVM acceleration but DMI wins for it.
        let vbox = VmEvidence {
            dmi: vec!["VirtualBox".into(), "innotek GmbH".into()],
            cpuid_vendor: Some("KVMKVMKVM".into()),
            hypervisor_flag: true,
            ..Default::default()
        };
        assert_eq!(detect_vm(&vbox).as_deref(), Some("oracle"));
        // Proxmox: DMI says QEMU, CPUID says KVM: systemd reports kvm.
        let proxmox = VmEvidence {
            dmi: vec!["Standard PC (Q35 + ICH9, 2009)".into(), "QEMU".into()],
            cpuid_vendor: Some("KVMKVMKVM".into()),
            hypervisor_flag: true,
            ..Default::default()
        };
        assert_eq!(detect_vm(&proxmox).as_deref(), Some("kvm"));
        let hyperv = VmEvidence {
            dmi: vec!["Virtual Machine".into(), "Microsoft Corporation".into()],
            ..Default::default()
        };
        assert_eq!(detect_vm(&hyperv).as_deref(), Some("microsoft"));
        let unknown = VmEvidence {
            hypervisor_flag: true,
            ..Default::default()
        };
        assert_eq!(detect_vm(&unknown).as_deref(), Some("vm-other"));
        assert_eq!(detect_vm(&VmEvidence::default()), None);
        let ec2 = VmEvidence {
            dmi: vec!["m5.large".into(), "Amazon EC2".into()],
            cpuid_vendor: Some("KVMKVMKVM".into()),
            ..Default::default()
        };
        assert_eq!(detect_vm(&ec2).as_deref(), Some("amazon"));
    }

    #[test]
    fn kvm_guest_inside_docker_says_both() {
        let vm = VmEvidence {
            cpuid_vendor: Some("KVMKVMKVM\0\0\0".into()),
            hypervisor_flag: true,
            ..Default::default()
        };
        let ct = ContainerEvidence {
            dockerenv: true,
            kernel_osrelease: "6.1.0-18-amd64".into(),
            ..Default::default()
        };
        assert_eq!(detect_vm(&vm).as_deref(), Some("kvm"));
        assert_eq!(detect_container(&ct).as_deref(), Some("docker"));
    }

    #[test]
    fn container_detection_order() {
        let podman = ContainerEvidence {
            run_containerenv: true,
            dockerenv: true,
            ..Default::default()
        };
        assert_eq!(detect_container(&podman).as_deref(), Some("podman"));
        let nspawn = ContainerEvidence {
            manager_files: vec!["systemd-nspawn".into()],
            dockerenv: true,
            ..Default::default()
        };
        assert_eq!(detect_container(&nspawn).as_deref(), Some("systemd-nspawn"));
        let wsl = ContainerEvidence {
            kernel_osrelease: "5.15.90.1-microsoft-standard-WSL2".into(),
            ..Default::default()
        };
        assert_eq!(detect_container(&wsl).as_deref(), Some("wsl"));
        let odd = ContainerEvidence {
            manager_files: vec!["garden".into()],
            ..Default::default()
        };
        assert_eq!(detect_container(&odd).as_deref(), Some("container-other"));
        assert_eq!(detect_container(&ContainerEvidence::default()), None);
    }
}
