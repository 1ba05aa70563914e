//! The only `unsafe` of this crate: reading the time-stamp counter and asking the CPU
//! whether it is invariant. Everything that interprets the counter lives in
//! [`super::calibrate`].
#![allow(unsafe_code)]

/// Why the TSC cannot be trusted as a clock here, or `Ok` when the CPU says its TSC is
/// invariant: it ticks at a constant rate in every P-, C- and T-state (CPUID leaf
/// `0x8000_0007`, EDX bit 8), so it measures time and not work.
#[cfg(target_arch = "x86_64")]
pub(crate) fn check_invariant() -> Result<(), String> {
    use core::arch::x86_64::__cpuid;
    // `__cpuid` became a safe function in later Rust releases; the block keeps the crate
    // building with the workspace's minimum Rust version, where it is still `unsafe`.
    #[allow(unused_unsafe)]
    // SAFETY: CPUID exists on every x86-64 CPU; leaf 0x8000_0000 has no side effects.
    let highest = unsafe { __cpuid(0x8000_0000) }.eax;
    if highest < 0x8000_0007 {
        return Err(format!("CPUID reports no leaf 0x80000007 (highest extended leaf {highest:#x})"));
    }
    #[allow(unused_unsafe)]
    // SAFETY: as above; the leaf was just checked to exist, and reading it has no side effects.
    let edx = unsafe { __cpuid(0x8000_0007) }.edx;
    if edx & (1 << 8) == 0 {
        return Err("CPUID leaf 0x80000007 EDX bit 8 (invariant TSC) is clear".into());
    }
    Ok(())
}

/// Not x86-64: there is no TSC to trust.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn check_invariant() -> Result<(), String> {
    Err(format!("no TSC on {}", std::env::consts::ARCH))
}

/// Why the TSC cannot serve as a clock here, or what vouches for it: the CPU saying it is
/// invariant, or else the kernel running its own clock on it. Virtual machines often hide
/// the invariant bit while the guest kernel has checked the TSC (against other clocks, with
/// its clocksource watchdog) and uses it; it would switch away were the TSC unstable.
pub(crate) fn check_stable() -> Result<&'static str, String> {
    let invariant = match check_invariant() {
        Ok(()) => return Ok("invariant TSC (CPUID 0x80000007 EDX bit 8)"),
        Err(reason) => reason,
    };
    let source = std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource");
    match source.as_deref().map(str::trim) {
        Ok("tsc") => Ok("the kernel's clocksource is the TSC (CPUID does not report it invariant)"),
        Ok(other) => Err(format!("{invariant}, and the kernel's clocksource is {other}, not tsc")),
        Err(_) => Err(invariant),
    }
}

/// The raw time-stamp counter.
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn read() -> u64 {
    // The kernel could forbid RDTSC in user mode (CR4.TSD); it does not for ordinary processes,
    // and callers only read after `check_stable` succeeded.
    // The kernel could forbid RDTSC in user mode (CR4.TSD); it does not for ordinary processes,
    // and callers only read after `check_stable` succeeded.
    // SAFETY: RDTSC exists on every x86-64 CPU and only reads a counter.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Never called: without a TSC the calibrated clock always falls back to the OS clock.
#[cfg(not(target_arch = "x86_64"))]
#[inline]
pub(crate) fn read() -> u64 {
    unreachable!("no TSC on this architecture")
}
