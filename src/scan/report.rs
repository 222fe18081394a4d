//! Which scoring code runs on this CPU: for bug reports, CI logs and `xqdb kernels`.

use super::f16::F16Kernel;
use serde::Serialize;

/// The processor and the kernels that score each storage type on it.
///
/// Obtained from [`kernel_report`]. Every kernel listed accumulates in f32 or wider (i8:
/// in integers), whatever the CPU.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct KernelReport {
    /// The CPU model as the operating system names it (`unknown` where it cannot tell).
    pub cpu: String,
    /// The SIMD features the dispatch depends on that this CPU has.
    pub features: Vec<&'static str>,
    /// The kernel that scores f32 rows for single queries.
    pub f32: &'static str,
    /// The kernel that scores f16 rows for single queries.
    pub f16: &'static str,
    /// The kernel that scores i8 rows for single queries.
    pub i8: &'static str,
    /// The kernel that counts Hamming distances of binary codes (the binary first pass).
    pub binary: &'static str,
    /// How batches of 4 or more queries are scored.
    pub batch: &'static str,
    /// Every f16 variant this CPU can execute (each is tested against the scalar reference).
    pub f16_runnable: Vec<&'static str>,
}

/// Describes the CPU and the kernels scans use on it.
pub fn kernel_report() -> KernelReport {
    use simsimd::capabilities as caps;
    // simsimd 6.5's dispatch order for dot products (include/simsimd/simsimd.h).
    let f32 = if caps::uses_sve() {
        "simsimd f32 sve"
    } else if caps::uses_neon() {
        "simsimd f32 neon"
    } else if caps::uses_skylake() {
        "simsimd f32 skylake (avx512f)"
    } else if caps::uses_haswell() {
        "simsimd f32 haswell (avx2+fma)"
    } else {
        "simsimd f32 serial"
    };
    let i8 = if caps::uses_neon_i8() {
        "simsimd i8 neon"
    } else if caps::uses_ice() {
        "simsimd i8 ice (avx512 vnni)"
    } else if caps::uses_haswell() {
        "simsimd i8 haswell (avx2)"
    } else {
        "simsimd i8 serial"
    };
    let batch = if super::batch::available() {
        "4 rows x 32 queries avx512f tile (f16/i8 rows widened to f32)"
    } else {
        "the single-query kernels, one pair at a time"
    };
    KernelReport {
        cpu: cpu_model(),
        features: features(),
        f32,
        f16: F16Kernel::best().name(),
        i8,
        binary: super::BitsKernel::best().name(),
        batch,
        f16_runnable: F16Kernel::ALL
            .into_iter()
            .filter(|k| k.available())
            .map(F16Kernel::name)
            .collect(),
    }
}

fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    info.lines()
        .find_map(|l| {
            let (key, value) = l.split_once(':')?;
            matches!(key.trim(), "model name" | "Model" | "CPU part")
                .then(|| value.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string())
}

fn features() -> Vec<&'static str> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        let all = [
            ("avx2", has!("avx2")),
            ("fma", has!("fma")),
            ("f16c", has!("f16c")),
            ("avx512f", has!("avx512f")),
            ("avx512bw", has!("avx512bw")),
            ("avx512vnni", has!("avx512vnni")),
            ("avx512bf16", has!("avx512bf16")),
            ("avx512fp16", has!("avx512fp16")),
        ];
        all.into_iter().filter(|f| f.1).map(|f| f.0).collect()
    }
    #[cfg(target_arch = "aarch64")]
    {
        use std::arch::is_aarch64_feature_detected as has;
        let all = [
            ("neon", has!("neon")),
            ("fp16", has!("fp16")),
            ("sve", has!("sve")),
        ];
        all.into_iter().filter(|f| f.1).map(|f| f.0).collect()
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        Vec::new()
    }
}

impl std::fmt::Display for KernelReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "cpu: {}", self.cpu)?;
        writeln!(f, "features: {}", self.features.join(" "))?;
        writeln!(f, "f32 rows: {}", self.f32)?;
        writeln!(f, "f16 rows: {}", self.f16)?;
        writeln!(f, "i8 rows: {}", self.i8)?;
        writeln!(f, "binary codes: {}", self.binary)?;
        writeln!(f, "batches: {}", self.batch)?;
        write!(
            f,
            "f16 variants runnable here: {}",
            self.f16_runnable.join(", ")
        )
    }
}
