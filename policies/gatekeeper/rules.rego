# The rule table of RULES.md: each rule that applies to the input is a "hit"
# (its id). data.catalog.rules gives each id its level, effect and static
# obligations; the dynamic parts are computed here:
#   extra_obligations[id]: obligations beyond the static ones (the IMM-01
#                          bundle's 99.32 entry, conditional obligations)
#   also[id]:              rule ids listed right after this one (tests, companions)
# and decision.rego picks the fields a permit releases.
# decision.rego resolves the hits. (Hits are plain strings: rego-cpp builds
# sets of objects slowly.)
package gatekeeper

import rego.v1

# ======================= level 1: field-level absolute bans ===============

hits contains "IMM-02" if {
	count(requested_status_fields) > 0
	not sevp_case
}

hits contains "IMM-17" if {
	input.is_bulk
	external
	count(requested_proxy_fields) > 0
}

hits contains "IMM-17" if {
	input.is_bulk
	immigration_authority_involved
}

hits contains "IMM-17" if {
	input.is_bulk
	vendor_enforcement_linked
}

# ======================= level 3: immigration context =====================

hits contains "IMM-01" if immigration_context

hits contains "IMM-18" if sevp_case

# --- documents that are not judicial process ---

hits contains "IMM-03" if {
	immigration_context
	doc_type in cat.documents.admin_warrants
}

hits contains "IMM-03" if {
	immigration_context
	is_warrant_or_order
	not court_issued
}

hits contains "IMM-04" if {
	immigration_context
	doc_type == "detainer_I247A"
}

hits contains "IMM-05" if {
	immigration_context
	doc_type == "admin_subpoena_I138"
}

hits contains "IMM-05" if {
	immigration_context
	is_subpoena
	not subpoena_form_ok
}

# --- judicial process in an immigration context ---

default imm_judicial_document := false

# A judicial document the IMM-03/IMM-05 tests did not already reject.
imm_judicial_document if {
	immigration_context
	is_judicial_document
	not imm_rejected_as_not_judicial
}

default imm_rejected_as_not_judicial := false

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

default imm_ambiguous := false

# Ambiguous identity while every other test passes: the legal office decides.
imm_ambiguous if {
	imm_judicial_document
	identity_ambiguous
	every d in imm_document_defects {
		d == "PROC-04"
	}
}

hits contains "IMM-12A" if imm_ambiguous

hits contains "IMM-12" if {
	imm_judicial_document
	count(imm_document_defects) > 0
	not imm_ambiguous
}

default imm_document_valid := false

imm_document_valid if {
	imm_judicial_document
	count(imm_document_defects) == 0
}

in_scope_list := [f | some f in input.fields; f in fields_in_scope]

out_of_scope_rules := ["IMM-12"] if count(fields_out_of_scope) > 0

out_of_scope_rules := [] if count(fields_out_of_scope) == 0

hits contains "IMM-10" if {
	imm_document_valid
	legal_review_approved
	not imm_notice_too_short
}

hits contains "IMM-11" if {
	imm_document_valid
	not legal_review_approved
}

hits contains "IMM-11" if {
	imm_document_valid
	legal_review_approved
	imm_notice_too_short
}

# --- consent and claims of consent ---

hits contains "IMM-06" if {
	immigration_context
	has_consent
	not written_consent
	not is_judicial_document
}

hits contains "IMM-07" if {
	immigration_context
	consent_valid
	consent.signer_in_custody != true
}

hits contains "IMM-07U" if {
	immigration_context
	consent_valid_unverified
	not consent_verified
}

hits contains "IMM-07U" if {
	immigration_context
	consent_valid_unverified
	consent.signer_in_custody == true
}

# --- directory information, emergencies, welfare checks ---

# An unrevoked, signed written consent that names the requester (IMM-13).
default written_consent_naming_requester := false

written_consent_naming_requester if {
	written_consent
	not consent_revoked
	consent_recipient_fits
}

default bare_request := false

bare_request if {
	not is_judicial_document
	not written_consent
}

default asked_for_immigration := false

asked_for_immigration if immigration_authority_involved

asked_for_immigration if input.purpose == "immigration_enforcement"

hits contains "IMM-08" if {
	immigration_context
	asked_for_immigration
	directory_only
	bare_request
	student.status != "former"
}

hits contains "IMM-08F" if {
	immigration_context
	asked_for_immigration
	directory_only
	bare_request
	student.status == "former"
}

hits contains "IMM-09" if {
	immigration_authority_involved
	emergency_asserted
}

hits contains "IMM-13" if {
	input.purpose == "welfare_check"
	immigration_authority_involved
	not is_judicial_document
	not written_consent_naming_requester
}

# --- vendors (every vendor request, immigration context or not) ---

default vendor_for_immigration := false

vendor_for_immigration if {
	is_vendor
	vendor_enforcement_linked
}

vendor_for_immigration if {
	is_vendor
	input.on_behalf_of in immigration_codes
}

hits contains "IMM-14" if vendor_for_immigration

hits contains "IMM-14" if {
	is_vendor
	input.is_bulk
	not vendor_in_contract_scope
	not vendor_for_immigration
}

hits contains "IMM-14R" if {
	vendor_in_contract_scope
	input.vendor.board_review_flag == true
}

# --- police ---

hits contains "IMM-15" if {
	is_police
	input.purpose == "immigration_enforcement"
}

hits contains "IMM-15" if {
	is_police
	input.on_behalf_of in immigration_codes
}

# Inquiring into immigration status (Gov. Code 7284.6(a)(1)(A)).
hits contains "IMM-15" if {
	is_police
	count(requested_status_fields) > 0
}

hits contains "IMM-15T" if {
	is_police
	task_force_has_immigration
	input.purpose != "immigration_enforcement"
}

# ======================= level 4: compulsory process ======================

default ferpa9_process := false

ferpa9_process if {
	not immigration_context
	process_valid
}

hits contains "FERPA-9N" if {
	ferpa9_process
	ferpa9n_process
	legal_review_approved
}

hits contains "FERPA-9" if {
	ferpa9_process
	not ferpa9n_process
	legal_review_approved
	not notice_too_short
}

hits contains "FERPA-9T" if {
	ferpa9_process
	notice_too_short
}

hits contains "FERPA-9P" if {
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

hits contains "CONS-03" if {
	not immigration_context
	consent_revoked
}

hits contains "CONS-02" if {
	not immigration_context
	written_consent
	consent.signed_by_role != ""
	not consent_signer_is_rightholder
}

hits contains "CONS-01X" if {
	not immigration_context
	has_consent
	not consent_complete
}

hits contains "CONS-01X" if {
	not immigration_context
	consent_complete
	not consent_fits
}

hits contains "CONS-04" if {
	not immigration_context
	consent_valid_unverified
	not consent_verified
}

hits contains "CONS-01" if {
	not immigration_context
	consent_valid
}

default directory_request := false

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

hits contains "DIR-02" if {
	directory_request
	"dir_optout" in student.flags
	not consent_valid
}

hits contains "DIR-03" if {
	directory_request
	"homeless" in student.flags
	not written_consent
}

hits contains "DIR-04" if {
	directory_request
	requester.kind in cat.kinds.profit_making
	not consent_valid
}

hits contains "DIR-01" if {
	directory_request
	requester.kind in cat.kinds.directory_recipients
	not "dir_optout" in student.flags
	not "homeless" in student.flags
}

default secondary_students := false

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

hits contains "DIR-05" if {
	not immigration_context
	requester.kind == "military_recruiter"
	every f in input.fields {
		f in cat.fields.recruiter
	}
	secondary_students
	not "recruiter_optout" in student.flags
}

# ======================= level 6: officials, parents, transfers ===========

# --- district staff ---

default role_fields := []

role_fields := cat.roles.fields[requester.role]

default role_bulk_scopes := []

role_bulk_scopes := cat.roles.bulk_scopes[requester.role]

default staff_request := false

staff_request if {
	not external
	not immigration_context
}

staff_allowed := [f | some f in input.fields; f in role_fields]

default staff_scope_ok := false

staff_scope_ok if not input.is_bulk

staff_scope_ok if input.bulk.scope in role_bulk_scopes

hits contains "FERPA-1" if {
	staff_request
	staff_scope_ok
	count(staff_allowed) > 0
}

hits contains "FERPA-1N" if {
	staff_request
	count(staff_allowed) == 0
}

hits contains "FERPA-1N" if {
	staff_request
	not staff_scope_ok
}

# --- vendors ---

hits contains "FERPA-1V" if {
	not immigration_context
	is_vendor
	vendor_in_contract_scope
	input.vendor.board_review_flag != true
}

hits contains "FERPA-1VX" if {
	not immigration_context
	is_vendor
	not vendor_in_contract_scope
}

# --- transfers, emergencies, child welfare ---

default transfer_request := false

transfer_request if {
	requester.kind == "other_school"
	input.purpose == "enrollment_transfer"
}

hits contains "FERPA-2" if {
	not immigration_context
	transfer_request
}

hits contains "FERPA-10" if {
	not immigration_context
	emergency_determined
}

hits contains "FERPA-10X" if {
	not immigration_context
	emergency_asserted
	not emergency_determined
	requester.kind != "child_welfare"
}

hits contains "CWS-01" if {
	not immigration_context
	requester.kind == "child_welfare"
	not has_consent
	not emergency_determined
}

# --- parents and eligible students ---

hits contains "FERPA-12" if {
	not immigration_context
	requester_is_rightholder
	not parent_restricted
}

default parent_restricted := false

parent_restricted if {
	"records_restriction_order" in student.flags
	requester_is_parent
}

default requester_is_parent := false

requester_is_parent if requester_is_guardian

requester_is_parent if requester.kind == "parent"

hits contains "FERPA-12R" if {
	not immigration_context
	parent_restricted
}

# ======================= level 7: default =================================

hits contains "GEN-01"

# ======================= the dynamic parts of a hit =======================

# Obligations beyond the static ones of data.catalog.rules.
extra_obligations[rule] := ["LOG_9932"] if {
	some rule in hits
	cat.rules[rule].imm01_bundle == true
	not directory_only
}

extra_obligations["IMM-10"] := ["SEALED_LOG"] if {
	"IMM-10" in hits
	nondisclosure_ordered
}

extra_obligations["IMM-10"] := ["NOTIFY_PARENT_PRE", "LOG_9932"] if {
	"IMM-10" in hits
	not nondisclosure_ordered
}

extra_obligations["IMM-14"] := ["REPORT_BOARD"] if {
	"IMM-14" in hits
	vendor_for_immigration
}

extra_obligations["FERPA-9"] := ["CONFIDENTIALITY_AGREEMENT"] if {
	"FERPA-9" in hits
	some f in in_scope_list
	f in cat.fields.contact
}

extra_obligations["GEN-01"] := ["LOG_9932"] if {
	"GEN-01" in hits
	external
	not directory_only
	not requester_is_rightholder
}

# Tests and companion rules listed right after a rule.
also["IMM-05"] := ["PROC-05"] if {
	"IMM-05" in hits
	is_subpoena
	not subpoena_form_ok
}

also["IMM-03"] := [p | some p in ["PROC-01", "PROC-02"]; p in proc_failures] if {
	"IMM-03" in hits
	is_warrant_or_order
}

also["IMM-12A"] := ["PROC-04"] if "IMM-12A" in hits

also["IMM-12"] := failed_procs if "IMM-12" in hits

also["IMM-10"] := array.concat(passed_procs, out_of_scope_rules) if "IMM-10" in hits

also["IMM-11"] := ["FERPA-9T"] if {
	"IMM-11" in hits
	legal_review_approved
}

also["IMM-11"] := ["PROC-06"] if {
	"IMM-11" in hits
	not legal_review_approved
}

also["IMM-14"] := ["FERPA-1VX"] if {
	"IMM-14" in hits
	not vendor_for_immigration
}

also["FERPA-9"] := ["PROC-05"] if {
	"FERPA-9" in hits
	is_subpoena
}

also["FERPA-1"] := ["FERPA-1N"] if {
	"FERPA-1" in hits
	count(staff_allowed) < count(input.fields)
}
