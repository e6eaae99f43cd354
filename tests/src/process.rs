//! Reading another process's resources from /proc, for the benchmarks: which process runs a
//! configuration, its memory, its CPU time.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// The process running `mailfold serve` with this configuration file.
pub fn pid_of(config: &Path) -> u32 {
    let config = config.to_string_lossy().into_owned();
    for entry in fs::read_dir("/proc").expect("/proc is readable").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let arguments: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        if arguments.contains(&b"serve".as_slice()) && arguments.contains(&config.as_bytes()) {
            return pid;
        }
    }
    panic!("no mailfold serve process for {config}");
}

/// A `Vm...:` line of `/proc/<pid>/status` (`VmRSS:`, `VmHWM:`), in bytes.
pub fn resident(pid: u32, field: &str) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"));
    kib << 10
}

/// utime and stime of a process (fields 14 and 15 of `/proc/<pid>/stat`).
pub fn cpu_times(pid: u32) -> (Duration, Duration) {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("process stat");
    // The command name, in parentheses, may hold spaces: count fields after its end.
    let after_name = &stat[stat.rfind(')').expect("comm field") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let per_second = clock_ticks() as f64;
    let seconds = |field: &str| {
        Duration::from_secs_f64(field.parse::<u64>().expect("tick count") as f64 / per_second)
    };
    (seconds(fields[11]), seconds(fields[12]))
}

fn clock_ticks() -> u64 {
    let output = Command::new("getconf").arg("CLK_TCK").output();
    output
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}
