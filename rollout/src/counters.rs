//! Limit counters (runtime.md §3.7): a limit `N per D per KEY` counts, per value of KEY, the
//! allowed actions in fixed windows of length D aligned to the Unix epoch.
//!
//! A counter is identified by its limit's identity (rule id, window, key path), the key's
//! value and the window's start. The store is a small trait: [`MemoryCounters`] here (the
//! simulator, tests), SQLite and Redis in the runtime.

use polctl_lang::eval::{Evaluator, Request};
use polctl_lang::ir::{Effect, PolicySet};
use serde::Serialize;
use std::collections::HashMap;

/// What makes two versions' limits the same counter: rule id, window and key path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct LimitIdentity {
    pub rule: String,
    pub window_seconds: u64,
    /// The key path as written (`agent.id`), `None` for a global limit.
    pub key: Option<String>,
}

impl std::fmt::Display for LimitIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} per {}s", self.rule, self.window_seconds)?;
        if let Some(key) = &self.key {
            write!(f, " per {key}")?;
        }
        Ok(())
    }
}

/// One counter: a limit, a key value and a window.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct CounterKey {
    pub limit: LimitIdentity,
    /// The key's value (empty for a global limit or a request without the key).
    pub value: String,
    /// Unix seconds at which the window began.
    pub window_start: i64,
}

impl CounterKey {
    /// Unix seconds at which the window ends (the counter can be dropped then).
    pub fn window_end(&self) -> i64 {
        self.window_start
            .saturating_add(self.limit.window_seconds.min(i64::MAX as u64) as i64)
    }
}

/// The start of the fixed window of `window_seconds` containing `now_seconds`.
pub fn window_start(now_seconds: i64, window_seconds: u64) -> i64 {
    let window = window_seconds.clamp(1, i64::MAX as u64) as i64;
    now_seconds - now_seconds.rem_euclid(window)
}

/// The counters' storage. Implementations keep every counter until its window ends.
pub trait CounterStore {
    fn get(&self, key: &CounterKey) -> Option<u64>;
    fn add(&mut self, key: &CounterKey, count: u64);
    /// Sets a counter that has no value yet (a seed); an existing value wins.
    fn seed(&mut self, key: &CounterKey, count: u64);
    /// Every live counter of one limit.
    fn of_limit(&self, limit: &LimitIdentity) -> Vec<(CounterKey, u64)>;
    /// Drops every counter of one limit (a limit added again must not find old counts).
    fn drop_limit(&mut self, limit: &LimitIdentity);
    /// Drops counters whose window ended at or before `now_seconds`.
    fn expire(&mut self, now_seconds: i64);
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Counters in a hash map, for the simulator and tests.
#[derive(Debug, Clone, Default)]
pub struct MemoryCounters {
    counters: HashMap<CounterKey, u64>,
    /// The earliest window end, so `expire` scans only when something can expire.
    next_expiry: Option<i64>,
}

impl CounterStore for MemoryCounters {
    fn get(&self, key: &CounterKey) -> Option<u64> {
        self.counters.get(key).copied()
    }

    fn add(&mut self, key: &CounterKey, count: u64) {
        *self.counters.entry(key.clone()).or_insert(0) += count;
        let end = key.window_end();
        self.next_expiry = Some(self.next_expiry.map_or(end, |e| e.min(end)));
    }

    fn seed(&mut self, key: &CounterKey, count: u64) {
        if !self.counters.contains_key(key) {
            self.add(key, count);
        }
    }

    fn of_limit(&self, limit: &LimitIdentity) -> Vec<(CounterKey, u64)> {
        let mut found: Vec<(CounterKey, u64)> = self
            .counters
            .iter()
            .filter(|(key, _)| &key.limit == limit)
            .map(|(key, count)| (key.clone(), *count))
            .collect();
        found.sort();
        found
    }

    fn drop_limit(&mut self, limit: &LimitIdentity) {
        self.counters.retain(|key, _| &key.limit != limit);
    }

    fn expire(&mut self, now_seconds: i64) {
        if self.next_expiry.is_none_or(|end| end > now_seconds) {
            return;
        }
        self.counters
            .retain(|key, _| key.window_end() > now_seconds);
        self.next_expiry = self.counters.keys().map(CounterKey::window_end).min();
    }

    fn len(&self) -> usize {
        self.counters.len()
    }
}

/// The identity of a limit rule of `set` (`None` if the rule is not a limit).
pub fn identity(set: &PolicySet, rule: usize) -> Option<LimitIdentity> {
    let rule = set.rules.get(rule)?;
    match &rule.effect {
        Effect::Limit(limit) => Some(LimitIdentity {
            rule: rule.id.clone(),
            window_seconds: limit.window_seconds,
            key: limit.key.as_ref().map(|path| path.to_string()),
        }),
        _ => None,
    }
}

/// One matching limit of a request in one version: its rule, its counter and its maximum.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitUse {
    pub rule: usize,
    pub counter: CounterKey,
    pub max: u64,
}

/// The counters of the limits a request matches in a version, at `now_seconds`.
pub fn limit_uses(evaluator: &Evaluator, request: &Request, now_seconds: i64) -> Vec<LimitUse> {
    let set = evaluator.set();
    evaluator
        .matching_limits(request)
        .into_iter()
        .filter_map(|rule| {
            let limit = identity(set, rule)?;
            let Effect::Limit(declared) = &set.rules[rule].effect else {
                return None;
            };
            let value = evaluator.limit_key_value(request, rule).unwrap_or_default();
            let start = window_start(now_seconds, limit.window_seconds);
            Some(LimitUse {
                rule,
                max: declared.max,
                counter: CounterKey {
                    limit,
                    value,
                    window_start: start,
                },
            })
        })
        .collect()
}

/// Fills a request's counters (what the evaluator reads for step 5 of the semantics) from the
/// store.
pub fn load_counters(request: &mut Request, uses: &[LimitUse], store: &dyn CounterStore) {
    request.counters = uses
        .iter()
        .map(|u| (u.rule, store.get(&u.counter).unwrap_or(0)))
        .collect();
}

/// Counts one allowed action against every limit it matches in either version, each counter
/// once (two versions with the same limit share it).
pub fn count_allowed(store: &mut dyn CounterStore, uses: &[&[LimitUse]]) {
    let mut counted: Vec<&CounterKey> = Vec::new();
    for version in uses {
        for limit_use in version.iter() {
            if !counted.contains(&&limit_use.counter) {
                store.add(&limit_use.counter, 1);
                counted.push(&limit_use.counter);
            }
        }
    }
}
