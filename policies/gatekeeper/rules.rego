# The rule table of RULES.md: each rule that applies to the input becomes a
# "hit" at its precedence level. decision.rego resolves the hits.
#
# A hit: {rule, level, effect, obligations, fields, also}
#   fields: what a permit releases (a subset of input.fields)
#   also:   rule ids listed right after this one (tests, companions)
package gatekeeper

import rego.v1

_hit(rule, level, effect, obligations) := {
	"rule": rule,
	"level": level,
	"effect": effect,
	"obligations": obligations,
	"fields": [],
	"also": [],
}

_permit(rule, level, obligations, fields, also) := {
	"rule": rule,
	"level": level,
	"effect": "permit",
	"obligations": obligations,
	"fields": fields,
	"also": also,
}

_deny_also(rule, level, obligations, also) := {
	"rule": rule,
	"level": level,
	"effect": "deny",
	"obligations": obligations,
	"fields": [],
	"also": also,
}

_escalate_also(rule, level, obligations, also) := {
	"rule": rule,
	"level": level,
	"effect": "escalate",
	"obligations": obligations,
	"fields": [],
	"also": also,
}

all_fields := input.fields

# The IMM-01 bundle; no 99.32 entry when only directory fields were asked.
imm01_bundle := [
	"NOTIFY_LEGAL", "NOTIFY_LEADERSHIP", "REPORT_BOARD",
	"NOTIFY_PARENT_OF_REQUEST", "DOCUMENT_REQUEST",
] if directory_only

imm01_bundle := [
	"NOTIFY_LEGAL", "NOTIFY_LEADERSHIP", "REPORT_BOARD",
	"NOTIFY_PARENT_OF_REQUEST", "DOCUMENT_REQUEST", "LOG_9932",
] if not directory_only

# ======================= level 1: field-level absolute bans ===============

hits contains _hit("IMM-02", 1, "deny", ["NOTIFY_LEGAL"]) if {
	count(requested_status_fields) > 0
	not sevp_case
}

hits contains _hit("IMM-17", 1, "deny", ["NOTIFY_LEGAL", "REPORT_BOARD"]) if {
	input.is_bulk
	external
	count(requested_proxy_fields) > 0
}

hits contains _hit("IMM-17", 1, "deny", ["NOTIFY_LEGAL", "REPORT_BOARD"]) if {
	input.is_bulk
	immigration_authority_involved
}

hits contains _hit("IMM-17", 1, "deny", ["NOTIFY_LEGAL", "REPORT_BOARD"]) if {
	input.is_bulk
	vendor_enforcement_linked
}

# ======================= level 3: immigration context =====================

hits contains _hit("IMM-01", 3, "deny", imm01_bundle) if immigration_context

hits contains _hit("IMM-18", 3, "escalate", ["NOTIFY_LEGAL"]) if sevp_case

# --- documents that are not judicial process ---

hits contains _hit("IMM-03", 3, "deny", imm01_bundle) if {
	immigration_context
	doc_type in cat.documents.admin_warrants
}

hits contains _hit("IMM-03", 3, "deny", imm01_bundle) if {
	immigration_context
	is_warrant_or_order
	not court_issued
}

hits contains _hit("IMM-04", 3, "deny", imm01_bundle) if {
	immigration_context
	doc_type == "detainer_I247A"
}

hits contains _hit("IMM-05", 3, "deny", imm01_bundle) if {
	immigration_context
	doc_type == "admin_subpoena_I138"
}

hits contains _deny_also("IMM-05", 3, imm01_bundle, ["PROC-05"]) if {
	immigration_context
	is_subpoena
	not subpoena_form_ok
}

# --- judicial process in an immigration context ---

# A judicial document the IMM-03/IMM-05 tests did not already reject.
imm_judicial_document if {
	immigration_context
	is_judicial_document
	not imm_rejected_as_not_judicial
}

imm_rejected_as_not_judicial if {
	is_warrant_or_order
	not court_issued
}

imm_rejected_as_not_judicial if {
	is_subpoena
	not subpoena_form_ok
}

imm_document_defects contains p if some p in proc_failures

imm_document_defects contains "DIRECTS_LEA" if lb.directs_lea != true

imm_document_defects contains "ARREST_WARRANT" if doc_type == "judicial_arrest_warrant"

# Ambiguous identity while every other test passes: the legal office decides.
imm_ambiguous if {
	imm_judicial_document
	identity_ambiguous
	every d in imm_document_defects {
		d == "PROC-04"
	}
}

hits contains _escalate_also("IMM-12A", 3, ["NOTIFY_LEGAL"], ["PROC-04"]) if imm_ambiguous

hits contains _deny_also("IMM-12", 3, imm01_bundle, failed_procs) if {
	imm_judicial_document
	count(imm_document_defects) > 0
	not imm_ambiguous
}

imm_document_valid if {
	imm_judicial_document
	count(imm_document_defects) == 0
}

imm10_obligations := array.concat(
	["REDACT_OUT_OF_SCOPE", "SEALED_LOG"],
	["NOTIFY_LEGAL", "NOTIFY_LEADERSHIP", "REPORT_BOARD", "DOCUMENT_REQUEST"],
) if nondisclosure_ordered

imm10_obligations := array.concat(
	["REDACT_OUT_OF_SCOPE", "NOTIFY_PARENT_PRE", "LOG_9932"],
	["NOTIFY_LEGAL", "NOTIFY_LEADERSHIP", "REPORT_BOARD", "DOCUMENT_REQUEST"],
) if not nondisclosure_ordered

in_scope_list := [f | some f in input.fields; f in fields_in_scope]

out_of_scope_rules := ["IMM-12"] if count(fields_out_of_scope) > 0

out_of_scope_rules := [] if count(fields_out_of_scope) == 0

hits contains _permit(
	"IMM-10", 3, imm10_obligations, in_scope_list,
	array.concat(passed_procs, out_of_scope_rules),
) if {
	imm_document_valid
	legal_review_approved
	not imm_notice_too_short
}

hits contains _escalate_also("IMM-11", 3, ["NOTIFY_LEGAL", "NOTIFY_LEADERSHIP", "DOCUMENT_REQUEST"], ["PROC-06"]) if {
	imm_document_valid
	not legal_review_approved
}

hits contains _escalate_also("IMM-11", 3, ["NOTIFY_LEGAL", "NOTIFY_LEADERSHIP", "DOCUMENT_REQUEST"], ["FERPA-9T"]) if {
	imm_document_valid
	legal_review_approved
	imm_notice_too_short
}

# --- consent and claims of consent ---

hits contains _hit("IMM-06", 3, "deny", imm01_bundle) if {
	immigration_context
	has_consent
	not written_consent
	not is_judicial_document
}

hits contains _permit(
	"IMM-07", 3,
	["REDACT_OUT_OF_SCOPE", "REDISCLOSURE_NOTICE", "NOTIFY_LEGAL", "REPORT_BOARD", "NOTIFY_LEADERSHIP"],
	all_fields, [],
) if {
	immigration_context
	consent_valid
	consent.signer_in_custody != true
}

hits contains _hit("IMM-07U", 3, "escalate", ["VERIFY_CONSENT", "NOTIFY_LEGAL"]) if {
	immigration_context
	consent_valid_unverified
	not consent_verified
}

hits contains _hit("IMM-07U", 3, "escalate", ["VERIFY_CONSENT", "NOTIFY_LEGAL"]) if {
	immigration_context
	consent_valid_unverified
	consent.signer_in_custody == true
}

# --- directory information, emergencies, welfare checks ---

bare_request if {
	not is_judicial_document
	not written_consent
}

asked_for_immigration if immigration_authority_involved

asked_for_immigration if input.purpose == "immigration_enforcement"

hits contains _hit("IMM-08", 3, "deny", imm01_bundle) if {
	immigration_context
	asked_for_immigration
	directory_only
	bare_request
	student.status != "former"
}

hits contains _hit("IMM-08F", 3, "escalate", ["NOTIFY_LEGAL", "REPORT_BOARD"]) if {
	immigration_context
	asked_for_immigration
	directory_only
	bare_request
	student.status == "former"
}

hits contains _hit("IMM-09", 3, "deny", imm01_bundle) if {
	immigration_authority_involved
	emergency_asserted
}

hits contains _hit("IMM-13", 3, "deny", imm01_bundle) if {
	input.purpose == "welfare_check"
	immigration_authority_involved
	bare_request
}

# --- vendors (every vendor request, immigration context or not) ---

imm14_obligations := ["NOTIFY_LEGAL", "REPORT_BOARD"] if {
	vendor_for_immigration
} else := ["NOTIFY_LEGAL"]

vendor_for_immigration if {
	is_vendor
	vendor_enforcement_linked
}

vendor_for_immigration if {
	is_vendor
	is_immigration_code(input.on_behalf_of)
}

hits contains _hit("IMM-14", 3, "deny", imm14_obligations) if vendor_for_immigration

hits contains _deny_also("IMM-14", 3, imm14_obligations, ["FERPA-1VX"]) if {
	is_vendor
	input.is_bulk
	not vendor_in_contract_scope
	not vendor_for_immigration
}

hits contains _hit("IMM-14R", 3, "escalate", ["NOTIFY_LEGAL"]) if {
	vendor_in_contract_scope
	input.vendor.board_review_flag == true
}

# --- police ---

hits contains _hit("IMM-15", 3, "deny", imm01_bundle) if {
	is_police
	input.purpose == "immigration_enforcement"
}

hits contains _hit("IMM-15", 3, "deny", imm01_bundle) if {
	is_police
	is_immigration_code(input.on_behalf_of)
}

# Inquiring into immigration status (Gov. Code 7284.6(a)(1)(A)).
hits contains _hit("IMM-15", 3, "deny", imm01_bundle) if {
	is_police
	count(requested_status_fields) > 0
}

hits contains _hit("IMM-15T", 3, "escalate", ["NOTIFY_LEGAL", "NOTIFY_LEADERSHIP"]) if {
	is_police
	task_force_has_immigration
	input.purpose != "immigration_enforcement"
	not is_immigration_code(input.on_behalf_of)
}

# ======================= level 4: compulsory process ======================

ferpa9_process if {
	not immigration_context
	process_valid
}

ferpa9_contact_obligations := ["CONFIDENTIALITY_AGREEMENT"] if {
	some f in in_scope_list
	f in cat.fields.contact
} else := []

ferpa9_also := ["PROC-05"] if is_subpoena

else := []

hits contains _permit("FERPA-9N", 4, ["SEALED_LOG", "NOTIFY_LEGAL", "REDACT_OUT_OF_SCOPE"], in_scope_list, []) if {
	ferpa9_process
	ferpa9n_process
	legal_review_approved
}

hits contains _permit(
	"FERPA-9", 4,
	array.concat(["NOTIFY_PARENT_PRE", "LOG_9932", "REDACT_OUT_OF_SCOPE", "NOTIFY_LEGAL"], ferpa9_contact_obligations),
	in_scope_list, ferpa9_also,
) if {
	ferpa9_process
	not ferpa9n_process
	legal_review_approved
	not notice_too_short
}

hits contains _hit("FERPA-9T", 4, "escalate", ["NOTIFY_LEGAL"]) if {
	ferpa9_process
	notice_too_short
}

hits contains _hit("FERPA-9P", 4, "escalate", ["NOTIFY_LEGAL"]) if {
	ferpa9_process
	not legal_review_approved
}

# A judicial document that failed a test gives no exception; the failed
# tests are listed after the deciding rule (decision.rego).
fallthrough_procs := failed_procs if {
	not immigration_context
	is_judicial_basis
	count(proc_failures) > 0
} else := []

# ======================= level 5: consent and directory ===================

hits contains _hit("CONS-03", 5, "deny", []) if {
	not immigration_context
	consent_revoked
}

hits contains _hit("CONS-02", 5, "deny", []) if {
	not immigration_context
	written_consent
	consent.signed_by_role != ""
	not consent_signer_is_rightholder
}

hits contains _hit("CONS-01X", 5, "deny", ["LOG_9932"]) if {
	not immigration_context
	has_consent
	not consent_complete
}

hits contains _hit("CONS-01X", 5, "deny", ["LOG_9932"]) if {
	not immigration_context
	consent_complete
	not consent_fits
}

hits contains _hit("CONS-04", 5, "escalate", ["VERIFY_CONSENT"]) if {
	not immigration_context
	consent_valid_unverified
	not consent_verified
}

hits contains _permit("CONS-01", 5, ["REDISCLOSURE_NOTICE", "REDACT_OUT_OF_SCOPE"], all_fields, []) if {
	not immigration_context
	consent_valid
}

# Directory requests by external parties without another basis of their own.
directory_request if {
	not immigration_context
	external
	directory_only
	not requester_is_rightholder
	not is_object(input.vendor)
	not transfer_request
	not emergency_determined
}

hits contains _hit("DIR-02", 5, "deny", []) if {
	directory_request
	has_flag("dir_optout")
	not consent_valid
}

hits contains _hit("DIR-03", 5, "deny", []) if {
	directory_request
	has_flag("homeless")
	not written_consent
}

hits contains _hit("DIR-04", 5, "deny", []) if {
	directory_request
	requester.kind in cat.kinds.profit_making
	not consent_valid
}

hits contains _permit("DIR-01", 5, [], all_fields, []) if {
	directory_request
	requester.kind in cat.kinds.directory_recipients
	not has_flag("dir_optout")
	not has_flag("homeless")
}

secondary_students if {
	not input.is_bulk
	student.grade in cat.thresholds.secondary_grades
}

secondary_students if {
	input.is_bulk
	count(input.bulk.grades) > 0
	every g in input.bulk.grades {
		g in cat.thresholds.secondary_grades
	}
}

hits contains _permit("DIR-05", 5, [], all_fields, []) if {
	not immigration_context
	requester.kind == "military_recruiter"
	every f in input.fields {
		f in cat.fields.recruiter
	}
	secondary_students
	not has_flag("recruiter_optout")
}

# ======================= level 6: officials, parents, transfers ===========

# --- district staff ---

role_fields := object.get(cat.roles.fields, requester.role, [])

role_bulk_scopes := object.get(cat.roles.bulk_scopes, requester.role, [])

staff_request if {
	not external
	not immigration_context
}

staff_allowed := [f | some f in input.fields; f in role_fields]

staff_scope_ok if not input.is_bulk

staff_scope_ok if input.bulk.scope in role_bulk_scopes

staff_partial := ["FERPA-1N"] if count(staff_allowed) < count(input.fields)

else := []

hits contains _permit("FERPA-1", 6, [], staff_allowed, staff_partial) if {
	staff_request
	staff_scope_ok
	count(staff_allowed) > 0
}

hits contains _hit("FERPA-1N", 6, "deny", []) if {
	staff_request
	count(staff_allowed) == 0
}

hits contains _hit("FERPA-1N", 6, "deny", []) if {
	staff_request
	not staff_scope_ok
}

# --- vendors ---

hits contains _permit("FERPA-1V", 6, ["REDACT_OUT_OF_SCOPE"], all_fields, []) if {
	not immigration_context
	is_vendor
	vendor_in_contract_scope
	input.vendor.board_review_flag != true
}

hits contains _hit("FERPA-1VX", 6, "deny", ["NOTIFY_LEGAL"]) if {
	not immigration_context
	is_vendor
	not vendor_in_contract_scope
}

# --- transfers, emergencies, child welfare ---

transfer_request if {
	requester.kind == "other_school"
	input.purpose == "enrollment_transfer"
}

hits contains _permit("FERPA-2", 6, ["LOG_9932"], all_fields, []) if {
	not immigration_context
	transfer_request
}

hits contains _permit("FERPA-10", 6, ["LOG_9932_EMERG"], all_fields, []) if {
	not immigration_context
	emergency_determined
}

hits contains _hit("FERPA-10X", 6, "deny", ["LOG_9932"]) if {
	not immigration_context
	emergency_asserted
	not emergency_determined
	requester.kind != "child_welfare"
}

hits contains _hit("CWS-01", 6, "escalate", ["NOTIFY_LEGAL"]) if {
	not immigration_context
	requester.kind == "child_welfare"
	not has_consent
	not emergency_determined
}

# --- parents and eligible students ---

hits contains _permit("FERPA-12", 6, [], all_fields, []) if {
	not immigration_context
	requester_is_rightholder
	not parent_restricted
}

parent_restricted if {
	has_flag("records_restriction_order")
	requester_is_parent
}

requester_is_parent if requester_is_guardian

requester_is_parent if requester.kind == "parent"

hits contains _hit("FERPA-12R", 6, "deny", []) if {
	not immigration_context
	parent_restricted
}

# ======================= level 7: default =================================

gen01_obligations := ["LOG_9932"] if {
	external
	not directory_only
	not requester_is_rightholder
} else := []

hits contains _hit("GEN-01", 7, "deny", gen01_obligations)
