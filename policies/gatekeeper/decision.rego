# The entrypoint: resolves the rule hits of rules.rego by the precedence of
# RULES.md into one decision object.
#
#   1. field-level bans   2. GEN-02 (identity)   3. immigration context
#   4. compulsory process 5. consent, directory  6. officials, parents, ...
#   7. GEN-01
#
# The first level with a hit decides. Within it, refining rules replace the
# rules they refine (data.catalog.replaces), then deny beats escalate beats
# permit. GEN-02 turns a permit or escalate for an unverified external
# requester into an escalate.
package gatekeeper

import rego.v1

# METADATA
# title: Records-access decision
# description: >-
#   The decision for one AccessRequest (docs/policy-input.md): decision,
#   rules (deciding rule first), obligations, allowed_fields, denied_fields,
#   guidance for front-office staff.
# entrypoint: true
decision := {
	"decision": final_effect,
	"rules": final_rules,
	"obligations": final_obligations,
	"allowed_fields": allowed_fields,
	"denied_fields": denied_fields,
	"guidance": guidance,
	"immigration_context": immigration_context,
}

# --- the deciding level ---------------------------------------------------

# Each hit's catalog entry and rank, looked up once: in rego-cpp a lookup
# in the whole rule catalog costs about ten times one in this small object.
hit_info := {h: cat.rules[h] | some h in hits}

hit_rank := {h: cat.rule_rank[h] | some h in hits}

deciding_level := min({info.level | some info in hit_info})

raw_level_hits := {h | some h in hits; hit_info[h].level == deciding_level}

replaced_rules := {r |
	some h in raw_level_hits
	some r in cat.replaces[h]
}

level_hits := raw_level_hits - replaced_rules

base_effect := "deny" if {
	some h in level_hits
	hit_info[h].effect == "deny"
} else := "escalate" if {
	some h in level_hits
	hit_info[h].effect == "escalate"
} else := "permit"

winners := {h | some h in level_hits; hit_info[h].effect == base_effect}

# Listing order: data.catalog.rule_rank; IMM-01 goes before IMM-08 when the
# question is whether the student is enrolled at all.
rank_overrides := {"IMM-08": cat.rule_rank_imm08_enrollment} if asks_enrollment_inquiry

else := {}

# rank -> rule (ranks are zero-padded strings, unique per rule; number keys
# sort differently in rego-cpp).
winner_rank_rule := {object.get(rank_overrides, h, hit_rank[h]): h | some h in winners}

ranked_winner_rules := [winner_rank_rule[rank] |
	rank := sort(object.keys(winner_rank_rule))[_]
]

deciding_base_rule := ranked_winner_rules[0]

winner_rules := [r |
	rule := ranked_winner_rules[_]
	r := array.concat([rule], object.get(also, rule, []))[_]
]

# When a field-level ban decides, the immigration rules that would also deny
# are listed after it.
level3_denials := {hit_rank[h]: h | some h in hits; hit_info[h].level == 3; hit_info[h].effect == "deny"}

also_denied := [level3_denials[rank] |
	deciding_level == 1
	rank := sort(object.keys(level3_denials))[_]
]

# Failed tests of a judicial document that gave no exception come right
# after the deciding rule.
base_rules_raw := array.concat(
	array.concat(array.slice(winner_rules, 0, 1), fallthrough_listed),
	array.concat(array.slice(winner_rules, 1, count(winner_rules)), also_denied),
)

fallthrough_listed := fallthrough_procs if deciding_level > 4

else := []

# (No rule id can be listed twice: the listed groups are disjoint.)
base_rules := base_rules_raw

# --- GEN-02: authentication of external requesters -------------------------

default gen02_applies := false

gen02_applies if {
	external
	identity_unverified
	base_effect != "deny"
}

final_effect := "escalate" if gen02_applies

else := base_effect

final_rules := array.concat(["GEN-02"], base_rules) if gen02_applies

else := base_rules

# --- obligations ------------------------------------------------------------

winner_obligations := {o | some h in winners; some o in hit_info[h].obligations} | {o |
	some h in winners
	some o in extra_obligations[h]
}

permit_obligations := {"REDACT_OUT_OF_SCOPE"} if final_effect == "permit"

else := set()

site_notice := {"SB98_SITE_NOTICE"} if {
	immigration_context
	input.channel == "in_person"
	requester_is_immigration
	final_effect != "escalate"
} else := set()

obligation_set := {"VERIFY_IDENTITY", "NOTIFY_LEGAL"} | winner_obligations if {
	gen02_applies
	base_effect == "escalate"
} else := {"VERIFY_IDENTITY", "NOTIFY_LEGAL"} if {
	gen02_applies
} else := (winner_obligations | permit_obligations) | site_notice

final_obligations := [o | some o in cat.obligation_order; o in obligation_set]

# --- fields -------------------------------------------------------------------

# What the deciding rule releases, in request order.
deciding_fields := in_scope_list if {
	deciding_base_rule in {"IMM-10", "FERPA-9", "FERPA-9N"}
} else := staff_allowed if {
	deciding_base_rule == "FERPA-1"
} else := input.fields

allowed_fields := [f |
	final_effect == "permit"
	f := input.fields[_]
	f in deciding_fields
]

denied_fields := [f | some f in input.fields; not f in allowed_fields]

# --- staff guidance ---------------------------------------------------------

default rule_text := ""

rule_text := cat.guidance.rules[deciding_rule]

deciding_rule := final_rules[0]

release_text := [concat("", ["Release only: ", concat(", ", allowed_fields), "."])] if {
	final_effect == "permit"
} else := ["Release nothing."] if final_effect == "deny"

else := ["Release nothing now."]

obligation_texts := [t |
	some o in final_obligations
	t := cat.guidance.obligations[o]
]

guidance := concat(" ", array.concat(
	array.concat([rule_text], release_text),
	obligation_texts,
))
