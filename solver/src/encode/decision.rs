//! The decision of language.md §3 over the rules' match terms, and what a tool's declaration says.

use super::*;

impl Encoding<'_> {
    /// What `tool`'s declaration says of its arguments: the required ones are present, and a
    /// present one is in its type's range. Unlike the tool's domain in [`Encoding::solver_for`],
    /// nothing about the arguments it does not declare (which another version of the set may).
    pub fn declared_facts(&self, tool: usize) -> Bool {
        let mut facts = Vec::new();
        for arg in self.set.schema.tools.get(tool).map_or(&[][..], |t| &t.args) {
            let Some(var) = self.args.get(&(arg.name.clone(), type_key(&arg.ty))) else {
                continue;
            };
            if !arg.optional {
                facts.push(var.present.clone());
            }
            facts.push(var.present.implies(domain(&var.value, &arg.ty)));
        }
        all(facts)
    }

    /// A matching approval rule still waits for one of its groups.
    pub fn waiting(&self, rule: usize) -> Bool {
        let schema = &self.set.schema;
        let Effect::RequireApproval { groups } = &self.set.rules[rule].effect else {
            return Bool::from_bool(false);
        };
        let missing = any(groups
            .iter()
            .filter_map(|g| schema.approvers.iter().position(|a| a == g))
            .map(|i| self.approvals[i].not())
            .collect());
        Bool::and(&[self.matches[rule].clone(), missing])
    }

    /// A matching limit whose counter already holds its maximum.
    pub fn limit_reached(&self, rule: usize) -> Bool {
        match (&self.set.rules[rule].effect, self.counters.get(&rule)) {
            (Effect::Limit(limit), Some(counter)) => Bool::and(&[
                self.matches[rule].clone(),
                counter.ge(Int::from_i64(limit.max.min(i64::MAX as u64) as i64)),
            ]),
            _ => Bool::from_bool(false),
        }
    }

    pub(super) fn of_effect(&self, wanted: fn(&Effect) -> bool) -> Vec<usize> {
        self.set
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| wanted(&r.effect))
            .map(|(i, _)| i)
            .collect()
    }

    pub fn deny_rules(&self) -> Vec<usize> {
        self.of_effect(|e| matches!(e, Effect::Deny { .. }))
    }

    pub fn approval_rules(&self) -> Vec<usize> {
        self.of_effect(|e| matches!(e, Effect::RequireApproval { .. }))
    }

    pub fn allow_rules(&self) -> Vec<usize> {
        self.of_effect(|e| matches!(e, Effect::Allow { .. }))
    }

    pub fn limit_rules(&self) -> Vec<usize> {
        self.of_effect(|e| matches!(e, Effect::Limit(_)))
    }

    /// The three decisions, as terms over the request (language.md §3).
    pub fn decision(&self) -> Decision {
        let every: Vec<usize> = (0..self.set.rules.len()).collect();
        self.decision_over(&every)
    }

    /// The decision terms over some rules only: for a request whose tool only these rules
    /// name, the same decision as [`Encoding::decision`], with much smaller terms.
    pub fn decision_over(&self, rules: &[usize]) -> Decision {
        let of = |wanted: fn(&Effect) -> bool| -> Vec<usize> {
            rules
                .iter()
                .copied()
                .filter(|&r| wanted(&self.set.rules[r].effect))
                .collect()
        };
        let denied = any(of(|e| matches!(e, Effect::Deny { .. }))
            .iter()
            .map(|&r| self.matches[r].clone())
            .collect());
        let waiting = any(of(|e| matches!(e, Effect::RequireApproval { .. }))
            .iter()
            .map(|&r| self.waiting(r))
            .collect());
        let allowed = any(of(|e| matches!(e, Effect::Allow { .. }))
            .iter()
            .map(|&r| self.matches[r].clone())
            .collect());
        let limited = any(of(|e| matches!(e, Effect::Limit(_)))
            .iter()
            .map(|&r| self.limit_reached(r))
            .collect());
        let require_approval = Bool::and(&[denied.not(), waiting.clone()]);
        let allow = Bool::and(&[denied.not(), waiting.not(), allowed.clone(), limited.not()]);
        let deny = Bool::or(&[
            denied.clone(),
            Bool::and(&[waiting.not(), Bool::or(&[allowed.not(), limited])]),
        ]);
        Decision {
            allow,
            deny,
            require_approval,
        }
    }
}

/// The decision terms.
pub struct Decision {
    pub allow: Bool,
    pub deny: Bool,
    pub require_approval: Bool,
}
