//! IPv4/IPv6 address pools and the `ifconfig-pool-persist` file.
//!
//! Owns dynamic address assignment for a server the way OpenVPN 2.6 does it
//! (src/openvpn/pool.c, server-ipv6.md §4): **one slot array** shared by both families. Slot `i`
//! yields the i-th IPv4 address (or /30 for net30) *and* the i-th IPv6 address, so a client
//! always gets a matching pair and IPv6 exhaustion follows IPv4 exhaustion (and vice versa).
//! Either family may be absent: an IPv6-only pool has IPv6-only slots, an IPv4-only pool
//! IPv4-only slots. The slot count is `min(v4 size, v6 size)` of the configured families.
//!
//! Sans-IO: nothing here touches files, clocks or sockets. Release order is tracked with an
//! internal logical clock (a counter bumped on every release) instead of wall-clock seconds;
//! OpenVPN compares `time_t` release stamps, so the only difference is that two releases within
//! the same second are still ordered (ours is a strict LRU). File IO lives in the small shim at
//! the bottom of [`persist`].
//!
//! Slot selection ([`Pool::acquire`], OpenVPN `ifconfig_pool_find`):
//! 1. with `duplicate-cn`: the first free slot (even one fixed to a CN by a read-only persist
//!    file, as in OpenVPN, which does not pass the CN in this mode); the CN is not recorded;
//! 2. otherwise a free slot remembering this CN (earlier session or persist file; fixed slots
//!    included) wins, lowest index first;
//! 3. otherwise the free, non-fixed slot released longest ago; never-used slots (stamp 0) win,
//!    lowest index first among equal stamps.
//!
//! [`Pool::release`] is OpenVPN's *soft* release (disconnect): the slot keeps its CN so the same
//! client gets the same addresses next time, unless the pool runs out of never-used and
//! longer-released slots. [`Pool::release_hard`] forgets the CN (OpenVPN does this when a ccd
//! `ifconfig-push` replaces the pool address).
//!
//! Server integration (server-ipv6.md §5): acquire after authentication; if a client-connect
//! handler supplies `ifconfig-push`, `release_hard` the slot (no pool IPv6 then either); an
//! `ifconfig-ipv6-push` alone only overrides the IPv6 address and the slot stays leased; `release`
//! on disconnect.
//!
//! Additions over OpenVPN (which only warns): static `ifconfig-push` / `ifconfig-ipv6-push`
//! addresses registered with [`Pool::reserve_static_v4`] / [`Pool::reserve_static_v6`] exclude
//! their whole slot, so a static address is never handed out dynamically.
//!
//! Invariants: a slot is handed out only while not in use and not statically excluded; a slot's
//! addresses are a pure function of its index, so "no slot handed out twice" implies "no address
//! handed out twice"; `in_use` always equals the number of slots with `in_use == true`.
//!
//! Capacity: the IPv4 range is limited to 65536 addresses (OpenVPN `IFCONFIG_POOL_MAX`); an
//! IPv6 pool has at most 65536 slots (OpenVPN's size below /112, and the natural maximum at
//! /112), so an IPv6-only pool is capped at 65536 clients. `max-clients` is enforced elsewhere.

pub mod persist;
pub mod v4;
pub mod v6;

use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

pub use persist::{PersistEntry, PersistWarning, RestoreMode};
pub use v4::{PoolV4, V4Mode, IFCONFIG_POOL_MAX};
pub use v6::{PoolV6, MAX_V6_POOL_BITS, MIN_V6_POOL_BITS};

use v4::V4Range;
use v6::V6Range;

/// Index of a pool slot (OpenVPN's `ifconfig_pool_handle`). Valid only for the pool that
/// returned it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SlotId(u32);

impl SlotId {
    /// The zero-based slot index.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for SlotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Pool configuration: which families are pooled and whether `duplicate-cn` is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PoolConfig {
    /// `ifconfig-pool` (explicit or from the `server` macro); `None` for IPv6-only servers.
    pub v4: Option<PoolV4>,
    /// `ifconfig-ipv6-pool` (explicit or from `server-ipv6`); `None` for IPv4-only servers.
    pub v6: Option<PoolV6>,
    /// `duplicate-cn`: slots are not tied to the common name.
    pub duplicate_cn: bool,
}

/// Addresses assigned to one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Lease {
    /// The slot to give back with [`Pool::release`].
    pub slot: SlotId,
    /// The client's IPv4 address (`None` without an IPv4 pool). For net30 this is `base + 2`
    /// of its /30.
    pub v4: Option<Ipv4Addr>,
    /// net30 only: the server-side endpoint of the client's /30 (`base + 1`), i.e. the
    /// point-to-point remote as seen by the client, pushed as `ifconfig <v4> <v4_remote>`.
    /// `None` for individual (subnet/p2p/tap) pools.
    pub v4_remote: Option<Ipv4Addr>,
    /// The client's IPv6 address (`None` without an IPv6 pool).
    pub v6: Option<Ipv6Addr>,
}

/// Errors from building or using a pool. Never a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// Neither an IPv4 nor an IPv6 pool was configured.
    #[error("no IPv4 or IPv6 pool configured")]
    NoFamily,
    /// `ifconfig-pool` start is above its end.
    #[error("ifconfig-pool start IP {start} is greater than end IP {end}")]
    V4StartAfterEnd {
        /// Configured start.
        start: Ipv4Addr,
        /// Configured end.
        end: Ipv4Addr,
    },
    /// `ifconfig-pool` spans more than [`IFCONFIG_POOL_MAX`] addresses.
    #[error(
        "ifconfig-pool address range is too large [{start} -> {end}]; \
         the maximum is {IFCONFIG_POOL_MAX} addresses"
    )]
    V4RangeTooLarge {
        /// Configured start.
        start: Ipv4Addr,
        /// Configured end.
        end: Ipv4Addr,
    },
    /// The IPv4 pool has fewer than 2 slots.
    #[error("IPv4 pool size is too small ({size}), must be at least 2")]
    V4TooSmall {
        /// Computed slot count.
        size: u32,
    },
    /// The IPv6 pool prefix length is outside 64..=124.
    #[error("IPv6 pool prefix length /{bits} is invalid, must be between /64 and /124")]
    V6PrefixLen {
        /// Configured prefix length.
        bits: u8,
    },
    /// The IPv6 pool has fewer than 2 slots.
    #[error("IPv6 pool size is too small ({size}), must be at least 2")]
    V6TooSmall {
        /// Computed slot count.
        size: u32,
    },
    /// No free slot is left (OpenVPN: "no free --ifconfig-pool addresses are available").
    #[error("address pool exhausted: all {capacity} slots are in use or reserved")]
    Exhausted {
        /// Number of slots of the pool.
        capacity: u32,
    },
    /// [`Pool::release`] of a slot that does not exist or is not in use.
    #[error("pool slot {0} is not in use")]
    NotInUse(SlotId),
}

/// Where a static (`ifconfig-push` / `ifconfig-ipv6-push`) address falls relative to the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StaticReservation {
    /// Outside the dynamic pool: nothing to exclude (the usual, recommended setup).
    OutsidePool,
    /// Inside the pool: its slot is now excluded from dynamic assignment. Worth a warning.
    Excluded(SlotId),
    /// Inside the pool and the slot is currently leased to a client: excluded from now on (it
    /// will not be handed out again after that client leaves), but the caller has a conflict to
    /// report or resolve.
    InUse(SlotId),
}

/// Per-slot bookkeeping (OpenVPN `ifconfig_pool_entry`).
#[derive(Debug, Clone, Default)]
struct Slot {
    in_use: bool,
    /// CN that owns or remembers this slot (soft release / persist file).
    cn: Option<Box<str>>,
    /// Logical release stamp: 0 = never used / hard-released; larger = released later.
    last_release: u64,
    /// From a read-only persist file (`SECONDS = 0`): only that CN may get the slot.
    fixed: bool,
    /// Number of registered static addresses that fall into this slot.
    static_refs: u32,
}

impl Slot {
    fn available(&self) -> bool {
        !self.in_use && self.static_refs == 0
    }
}

/// The combined IPv4/IPv6 address pool. See the module docs for the allocation rules.
#[derive(Debug, Clone)]
pub struct Pool {
    v4: Option<V4Range>,
    v6: Option<V6Range>,
    duplicate_cn: bool,
    slots: Vec<Slot>,
    in_use: u32,
    /// Logical clock for release stamps (see module docs).
    clock: u64,
    static_v4: HashMap<Ipv4Addr, SlotId>,
    static_v6: HashMap<Ipv6Addr, SlotId>,
    notes: Vec<String>,
}

impl Pool {
    /// Builds a pool. Errors on an invalid range or when no family is configured.
    pub fn new(cfg: PoolConfig) -> Result<Pool, PoolError> {
        let v4 = cfg.v4.as_ref().map(V4Range::new).transpose()?;
        let v6 = cfg.v6.as_ref().map(V6Range::new).transpose()?;
        let mut notes = Vec::new();
        let size = match (&v4, &v6) {
            (None, None) => return Err(PoolError::NoFamily),
            (Some(r4), None) => r4.size(),
            (None, Some(r6)) => r6.size(),
            (Some(r4), Some(r6)) => {
                let (s4, s6) = (r4.size(), r6.size());
                if s4 < s6 {
                    notes.push(format!(
                        "NOTE: IPv4 pool size is {s4}, IPv6 pool size is {s6}. IPv4 pool size \
                         limits the number of clients that can be served from the pool"
                    ));
                } else if s4 > s6 {
                    notes.push(format!(
                        "WARNING: IPv4 pool size is {s4}, IPv6 pool size is {s6}. IPv6 pool \
                         size limits the number of clients that can be served from the pool. \
                         This is likely a MISTAKE - please check your configuration"
                    ));
                }
                s4.min(s6)
            }
        };
        let len = usize::try_from(size).unwrap_or(0);
        Ok(Pool {
            v4,
            v6,
            duplicate_cn: cfg.duplicate_cn,
            slots: vec![Slot::default(); len],
            in_use: 0,
            clock: 0,
            static_v4: HashMap::new(),
            static_v6: HashMap::new(),
            notes,
        })
    }

    /// Messages produced while building the pool (size mismatch between the families), in
    /// OpenVPN's wording. The caller logs them.
    pub fn config_notes(&self) -> &[String] {
        &self.notes
    }

    /// Number of slots (= maximum number of clients served from the pool).
    pub fn capacity(&self) -> u32 {
        u32::try_from(self.slots.len()).unwrap_or(u32::MAX)
    }

    /// Number of slots currently leased.
    pub fn in_use(&self) -> u32 {
        self.in_use
    }

    /// Number of slots that could be handed out right now to a CN with no remembered slot
    /// (free, not statically excluded, not fixed to another CN).
    pub fn available(&self) -> u32 {
        let n = self
            .slots
            .iter()
            .filter(|s| s.available() && (self.duplicate_cn || !s.fixed))
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Whether the pool hands out IPv4 addresses.
    pub fn has_v4(&self) -> bool {
        self.v4.is_some()
    }

    /// Whether the pool hands out IPv6 addresses.
    pub fn has_v6(&self) -> bool {
        self.v6.is_some()
    }

    /// The IPv4 allocation mode, if there is an IPv4 pool.
    pub fn v4_mode(&self) -> Option<V4Mode> {
        self.v4.as_ref().map(V4Range::mode)
    }

    /// The effective first IPv6 pool address (after the host-part-zero bump).
    pub fn v6_base(&self) -> Option<Ipv6Addr> {
        self.v6.as_ref().map(V6Range::base)
    }

    /// Whether `duplicate-cn` semantics are active.
    pub fn duplicate_cn(&self) -> bool {
        self.duplicate_cn
    }

    /// Assigns a slot to a connecting client with common name `cn` (OpenVPN
    /// `ifconfig_pool_acquire`). Without `duplicate-cn` the CN is recorded on the slot; with
    /// `duplicate-cn`, or for an empty CN, it is not.
    pub fn acquire(&mut self, cn: &str) -> Result<Lease, PoolError> {
        let record_cn = !self.duplicate_cn && !cn.is_empty();
        let idx = if self.duplicate_cn {
            // OpenVPN takes the first free slot here, fixed or not (the CN is not passed).
            self.slots.iter().position(Slot::available)
        } else {
            self.find_for_cn(cn)
        };
        let Some(idx) = idx else {
            return Err(PoolError::Exhausted {
                capacity: self.capacity(),
            });
        };
        let Some(slot) = self.slots.get_mut(idx) else {
            return Err(PoolError::Exhausted {
                capacity: self.capacity(),
            });
        };
        // Hard reset then claim; `fixed` deliberately survives (as in OpenVPN).
        slot.in_use = true;
        slot.last_release = 0;
        slot.cn = record_cn.then(|| Box::from(cn));
        self.in_use += 1;
        let id = SlotId(u32::try_from(idx).unwrap_or(u32::MAX));
        Ok(self.lease_of(id))
    }

    /// Steps 2 and 3 of the selection rules (module docs).
    fn find_for_cn(&self, cn: &str) -> Option<usize> {
        let mut best: Option<(usize, u64)> = None;
        for (i, s) in self.slots.iter().enumerate() {
            if !s.available() {
                continue;
            }
            if !cn.is_empty() && s.cn.as_deref() == Some(cn) {
                return Some(i);
            }
            // Strictly older wins, so equal stamps keep the lowest index.
            if !s.fixed && best.is_none_or(|(_, stamp)| s.last_release < stamp) {
                best = Some((i, s.last_release));
            }
        }
        best.map(|(i, _)| i)
    }

    /// Soft release on disconnect: the slot becomes free but remembers its CN (OpenVPN
    /// `ifconfig_pool_release(.., hard = false)`).
    pub fn release(&mut self, slot: SlotId) -> Result<(), PoolError> {
        self.clock += 1;
        let stamp = self.clock;
        let s = self.in_use_slot(slot)?;
        s.in_use = false;
        s.last_release = stamp;
        self.in_use -= 1;
        Ok(())
    }

    /// Hard release: the slot becomes free and forgets its CN, as if never used (OpenVPN does
    /// this when a client-connect handler supplies `ifconfig-push`).
    pub fn release_hard(&mut self, slot: SlotId) -> Result<(), PoolError> {
        let s = self.in_use_slot(slot)?;
        s.in_use = false;
        s.cn = None;
        s.last_release = 0;
        self.in_use -= 1;
        Ok(())
    }

    fn in_use_slot(&mut self, slot: SlotId) -> Result<&mut Slot, PoolError> {
        let idx = usize::try_from(slot.get()).map_err(|_| PoolError::NotInUse(slot))?;
        match self.slots.get_mut(idx) {
            Some(s) if s.in_use => Ok(s),
            _ => Err(PoolError::NotInUse(slot)),
        }
    }

    /// The addresses of a slot (whether or not it is in use); `None` for a foreign slot id.
    pub fn lease(&self, slot: SlotId) -> Option<Lease> {
        let idx = usize::try_from(slot.get()).ok()?;
        self.slots.get(idx)?;
        Some(self.lease_of(slot))
    }

    fn lease_of(&self, slot: SlotId) -> Lease {
        Lease {
            slot,
            v4: self.v4.as_ref().map(|r| r.client_addr(slot)),
            v4_remote: self.v4.as_ref().and_then(|r| r.server_end(slot)),
            v6: self.v6.as_ref().map(|r| r.addr(slot)),
        }
    }

    /// All slot ids of this pool, in index order.
    pub fn slot_ids(&self) -> impl Iterator<Item = SlotId> + '_ {
        (0..self.capacity()).map(SlotId)
    }

    /// Whether the slot is currently leased.
    pub fn is_in_use(&self, slot: SlotId) -> bool {
        self.slot(slot).is_some_and(|s| s.in_use)
    }

    /// The CN leasing or remembering the slot, if any.
    pub fn cn_of(&self, slot: SlotId) -> Option<&str> {
        self.slot(slot)?.cn.as_deref()
    }

    fn slot(&self, slot: SlotId) -> Option<&Slot> {
        self.slots.get(usize::try_from(slot.get()).ok()?)
    }

    /// The slot whose IPv4 block contains `addr` (net30: any address of the /30).
    pub fn slot_of_v4(&self, addr: Ipv4Addr) -> Option<SlotId> {
        self.v4
            .as_ref()?
            .slot_of(addr)
            .filter(|s| self.slot(*s).is_some())
    }

    /// The slot whose IPv6 address is `addr`.
    pub fn slot_of_v6(&self, addr: Ipv6Addr) -> Option<SlotId> {
        self.v6
            .as_ref()?
            .slot_of(addr)
            .filter(|s| self.slot(*s).is_some())
    }

    /// Whether `addr` lies inside the dynamic IPv4 pool (e.g. to warn about an `ifconfig-push`
    /// inside it). Only the first [`Pool::capacity`] slots count: when IPv6 limits the slot
    /// count, the IPv4 addresses beyond it are never handed out.
    pub fn contains_v4(&self, addr: Ipv4Addr) -> bool {
        self.slot_of_v4(addr).is_some()
    }

    /// Whether `addr` lies inside the dynamic IPv6 pool (see [`Pool::contains_v4`]).
    pub fn contains_v6(&self, addr: Ipv6Addr) -> bool {
        self.slot_of_v6(addr).is_some()
    }

    /// Registers a static IPv4 address (`ifconfig-push`) so the pool never hands out the slot
    /// containing it. Idempotent per address.
    pub fn reserve_static_v4(&mut self, addr: Ipv4Addr) -> StaticReservation {
        let Some(slot) = self.slot_of_v4(addr) else {
            return StaticReservation::OutsidePool;
        };
        if self.static_v4.insert(addr, slot).is_none() {
            self.add_static_ref(slot);
        }
        self.reservation_outcome(slot)
    }

    /// Registers a static IPv6 address (`ifconfig-ipv6-push`); see
    /// [`Pool::reserve_static_v4`].
    pub fn reserve_static_v6(&mut self, addr: Ipv6Addr) -> StaticReservation {
        let Some(slot) = self.slot_of_v6(addr) else {
            return StaticReservation::OutsidePool;
        };
        if self.static_v6.insert(addr, slot).is_none() {
            self.add_static_ref(slot);
        }
        self.reservation_outcome(slot)
    }

    /// Drops a static IPv4 reservation; returns whether it existed. The slot becomes
    /// assignable again once no static address refers to it.
    pub fn unreserve_static_v4(&mut self, addr: Ipv4Addr) -> bool {
        match self.static_v4.remove(&addr) {
            Some(slot) => {
                self.drop_static_ref(slot);
                true
            }
            None => false,
        }
    }

    /// Drops a static IPv6 reservation; see [`Pool::unreserve_static_v4`].
    pub fn unreserve_static_v6(&mut self, addr: Ipv6Addr) -> bool {
        match self.static_v6.remove(&addr) {
            Some(slot) => {
                self.drop_static_ref(slot);
                true
            }
            None => false,
        }
    }

    /// Whether the slot is excluded by a static reservation.
    pub fn is_static(&self, slot: SlotId) -> bool {
        self.slot(slot).is_some_and(|s| s.static_refs > 0)
    }

    fn add_static_ref(&mut self, slot: SlotId) {
        if let Some(s) = self.slot_mut(slot) {
            s.static_refs = s.static_refs.saturating_add(1);
        }
    }

    fn drop_static_ref(&mut self, slot: SlotId) {
        if let Some(s) = self.slot_mut(slot) {
            s.static_refs = s.static_refs.saturating_sub(1);
        }
    }

    fn slot_mut(&mut self, slot: SlotId) -> Option<&mut Slot> {
        let idx = usize::try_from(slot.get()).ok()?;
        self.slots.get_mut(idx)
    }

    fn reservation_outcome(&self, slot: SlotId) -> StaticReservation {
        if self.is_in_use(slot) {
            StaticReservation::InUse(slot)
        } else {
            StaticReservation::Excluded(slot)
        }
    }

    /// Applies entries read from an `ifconfig-pool-persist` file (OpenVPN `ifconfig_pool_read`),
    /// normally once at startup before any [`Pool::acquire`]. Each usable entry makes its slot
    /// remember the CN as if released at startup; with [`RestoreMode::Fixed`] (`SECONDS = 0`)
    /// the slot is reserved for that CN only.
    ///
    /// The slot comes from the IPv4 address when it maps into the IPv4 pool, else from the IPv6
    /// address; when both map to different slots IPv4 wins (warning). Entries outside the pool,
    /// for a leased or statically excluded slot, or without a usable address are skipped with a
    /// warning carrying the entry's line number. A later entry for the same slot replaces an
    /// earlier one (as in OpenVPN), with a warning.
    pub fn restore(&mut self, entries: &[PersistEntry], mode: RestoreMode) -> Vec<PersistWarning> {
        let mut warnings = Vec::new();
        // Everything read from the file counts as released "now", i.e. after every earlier
        // release and before every later one; never-used slots (stamp 0) are still preferred.
        self.clock += 1;
        let stamp = self.clock;
        let mut set_by: HashMap<SlotId, (Option<u32>, String)> = HashMap::new();
        for e in entries {
            let warn = |msg: String| PersistWarning {
                line: e.line,
                message: msg,
            };
            let cn = e.cn.as_str();
            let mut h4 = None;
            if let (Some(a4), Some(r4)) = (e.v4, self.v4.as_ref()) {
                h4 = r4.slot_of(a4).filter(|s| self.slot(*s).is_some());
                if h4.is_none() {
                    warnings.push(warn(format!("IPv4 {a4} out of pool range for CN={cn}")));
                }
            }
            let mut h6 = None;
            if let (Some(a6), Some(r6)) = (e.v6, self.v6.as_ref()) {
                h6 = r6.slot_of(a6).filter(|s| self.slot(*s).is_some());
                if h6.is_none() {
                    warnings.push(warn(format!("IPv6 {a6} out of pool range for CN={cn}")));
                }
            }
            let slot = match (h4, h6) {
                (Some(s4), Some(s6)) if s4 != s6 => {
                    warnings.push(warn(format!(
                        "IPv4 ({}) and IPv6 ({}) of CN={cn} are in different pool slots; \
                         relying on IPv4",
                        fmt_opt(e.v4),
                        fmt_opt(e.v6)
                    )));
                    s4
                }
                (Some(s), _) | (None, Some(s)) => s,
                (None, None) => {
                    let ignored_family = (e.v4.is_some() && self.v4.is_none())
                        || (e.v6.is_some() && self.v6.is_none());
                    if ignored_family || (e.v4.is_none() && e.v6.is_none()) {
                        warnings.push(warn(format!(
                            "no address of CN={cn} belongs to a configured pool; ignored"
                        )));
                    }
                    continue;
                }
            };
            let Some(s) = self.slot(slot) else { continue };
            if s.in_use {
                warnings.push(warn(format!(
                    "pool slot of CN={cn} is already leased; entry ignored"
                )));
                continue;
            }
            if s.static_refs > 0 {
                warnings.push(warn(format!(
                    "pool slot of CN={cn} holds a static ifconfig-push address; entry ignored"
                )));
                continue;
            }
            if let Some((line, prev)) = set_by.get(&slot) {
                let at = line.map(|l| format!(" (line {l})")).unwrap_or_default();
                warnings.push(warn(format!(
                    "CN={cn} replaces CN={prev}{at} in the same pool slot"
                )));
            }
            set_by.insert(slot, (e.line, cn.to_owned()));
            if let Some(s) = self.slot_mut(slot) {
                s.cn = Some(Box::from(cn));
                s.last_release = stamp;
                s.fixed = mode == RestoreMode::Fixed;
            }
        }
        warnings
    }

    /// One entry per slot that has a CN (leased or remembered), in slot order, as written to the
    /// persist file (OpenVPN `ifconfig_pool_list`): the IPv4 field is the client address, or the
    /// /30 base address for net30; a family without a pool is `None`. Static assignments are
    /// never included (they do not occupy slots).
    pub fn persist_entries(&self) -> Vec<PersistEntry> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let cn = s.cn.as_deref()?;
                let slot = SlotId(u32::try_from(i).ok()?);
                Some(PersistEntry {
                    line: None,
                    cn: cn.to_owned(),
                    v4: self.v4.as_ref().map(|r| r.block_base(slot)),
                    v6: self.v6.as_ref().map(|r| r.addr(slot)),
                })
            })
            .collect()
    }
}

fn fmt_opt<T: fmt::Display>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests;
