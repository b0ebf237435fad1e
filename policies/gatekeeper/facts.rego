# Facts derived from the normalized policy input (docs/policy-input.md).
#
# Python hands the pack a fully populated input: every key is present, dates
# are integer days in the district time zone, names are normalized. Nothing
# here uses time, network or schema built-ins (rego-cpp and OPA differ there).
package gatekeeper

import rego.v1

cat := data.catalog

requester := input.requester

student := input.student

lb := input.legal_basis

# --- fields -------------------------------------------------------------

requested_status_fields := {f | some f in input.fields; f in cat.fields.status}

requested_proxy_fields := {f | some f in input.fields; f in cat.fields.national_origin_proxies}

default directory_only := false

directory_only if {
	count(input.fields) > 0
	every f in input.fields {
		f in cat.fields.directory
	}
}

default asks_enrollment_inquiry := false

asks_enrollment_inquiry if {
	some f in input.fields
	f in cat.fields.enrollment_inquiry
}

# Note: the pack defines no functions of its own. rego-cpp evaluates a
# user-defined function call two orders of magnitude slower than a rule
# lookup, so everything is a document (rule) evaluated once per decision.

# --- who asks -----------------------------------------------------------

default external := false

external if not requester.kind in cat.kinds.internal

default identity_unverified := false

identity_unverified if requester.identity_verified != true

default requester_is_immigration := false

# The requester itself is an immigration authority (SB 98 site notice).
requester_is_immigration if requester.kind == "immigration_authority"

# Agency codes and names arrive normalized (NFKC, upper case, runs of other
# characters as "-"): "ice ero" is ICE-ERO, "U.S. Immigration and Customs
# Enforcement" is U-S-IMMIGRATION-AND-CUSTOMS-ENFORCEMENT. Codes of the
# catalog and names with an immigration-enforcement word both count;
# DHS-SEVP (student visas, IMM-18) does not.
immigration_codes contains code if {
	some code in array.concat([requester.agency, input.on_behalf_of], input.task_force)
	code != ""
	code != cat.agencies.sevp
	regex.match(cat.agencies.immigration_pattern, code)
}

# A code the catalog lists counts whatever the pattern says: a code added to
# agencies.immigration takes effect without editing the pattern.
immigration_codes contains code if {
	some code in array.concat([requester.agency, input.on_behalf_of], input.task_force)
	code != cat.agencies.sevp
	code in cat.agencies.immigration
}

requester_is_immigration if requester.agency in immigration_codes

default immigration_authority_involved := false

# By or for an immigration authority: itself, relayed, or through a task force.
immigration_authority_involved if requester_is_immigration

immigration_authority_involved if input.on_behalf_of in immigration_codes

immigration_authority_involved if {
	some member in input.task_force
	member in immigration_codes
}

default task_force_has_immigration := false

task_force_has_immigration if {
	some member in input.task_force
	member in immigration_codes
}

default is_police := false

is_police if requester.kind in cat.kinds.police

default is_vendor := false

is_vendor if requester.kind == "vendor"

is_vendor if is_object(input.vendor)

default vendor_enforcement_linked := false

vendor_enforcement_linked if input.vendor.enforcement_linked == true

# --- immigration context (RULES.md) -------------------------------------

default immigration_context := false

immigration_context if immigration_authority_involved

immigration_context if input.purpose == "immigration_enforcement"

immigration_context if vendor_enforcement_linked

immigration_context if lb.type in cat.documents.immigration

default sevp_case := false

# Student-visa compliance: DHS-SEVP asking about an F-1 student (IMM-18).
sevp_case if {
	requester.agency == cat.agencies.sevp
	"f1_visa" in student.flags
}

# --- the student ----------------------------------------------------------

default minor := false

minor if {
	is_number(student.age)
	student.age < cat.thresholds.adult_age
}

default adult := false

adult if {
	is_number(student.age)
	student.age >= cat.thresholds.adult_age
}

default requester_is_guardian := false

# A parent or guardian on file (the kind matters: a police officer whose id
# happens to be on file is not asking as a parent).
requester_is_guardian if {
	requester.kind == "parent"
	not input.is_bulk
	requester.id != ""
	requester.id in student.guardian_ids
}

default requester_is_the_student := false

requester_is_the_student if {
	not input.is_bulk
	requester.kind == "eligible_student"
	requester.id != ""
	requester.id == student.id
}

default requester_is_rightholder := false

# The requester holds the FERPA rights over this student's records.
requester_is_rightholder if {
	requester_is_guardian
	minor
}

requester_is_rightholder if {
	requester_is_the_student
	adult
}

# --- consent ------------------------------------------------------------

default has_consent := false

has_consent if is_object(input.consent)

consent := input.consent

default written_consent := false

# A signed writing, not a verbal claim or an unsigned paper.
written_consent if {
	has_consent
	consent.signed == true
	consent.received_via != "verbal_claim"
}

default consent_complete := false

consent_complete if {
	written_consent
	consent.signed_by_role != ""
	is_number(consent.dated_day)
	consent.dated_day <= input.as_of_day
	count(consent.records) > 0
	consent.purpose != ""
	consent.recipient != ""
}

default consent_recipient_fits := false

consent_recipient_fits if consent.recipient == requester.agency

consent_recipient_fits if consent.recipient == requester.id_key

default consent_records_fit := false

consent_records_fit if "all" in consent.records

consent_records_fit if {
	every f in input.fields {
		f in consent.records
	}
}

default consent_fits := false

consent_fits if {
	not input.is_bulk
	consent_recipient_fits
	consent.purpose == input.purpose
	consent_records_fit
}

default consent_signer_is_rightholder := false

consent_signer_is_rightholder if {
	consent.signed_by_role in cat.consent.parent_roles
	minor
}

consent_signer_is_rightholder if {
	consent.signed_by_role == "eligible_student"
	adult
}

default consent_revoked := false

consent_revoked if {
	has_consent
	is_number(consent.revoked_day)
	consent.revoked_day <= input.as_of_day
}

default consent_verified := false

consent_verified if consent.received_via in cat.consent.verified_channels

consent_verified if consent.verified_with_rightholder == true

default consent_valid_unverified := false

# Complete, fitting, signed by the right-holder and not revoked.
consent_valid_unverified if {
	consent_complete
	consent_fits
	consent_signer_is_rightholder
	not consent_revoked
}

default consent_valid := false

consent_valid if {
	consent_valid_unverified
	consent_verified
}

# --- emergency ----------------------------------------------------------

default emergency_asserted := false

emergency_asserted if is_object(input.emergency)

emergency_asserted if input.purpose == "emergency"

default emergency_determined := false

emergency_determined if input.emergency.district_determination == "articulable_significant_threat"

# --- vendor contract ----------------------------------------------------

default vendor_fields_fit := false

vendor_fields_fit if input.vendor.contracted_fields == null

vendor_fields_fit if {
	is_array(input.vendor.contracted_fields)
	every f in input.fields {
		f in input.vendor.contracted_fields
	}
}

default vendor_in_contract_scope := false

# Inside the contract's scope (the board flag is judged separately: IMM-14R).
vendor_in_contract_scope if {
	is_object(input.vendor)
	input.vendor.compliant == true
	input.purpose in input.vendor.contracted_purposes
	vendor_fields_fit
	not vendor_enforcement_linked
	input.on_behalf_of == ""
}
