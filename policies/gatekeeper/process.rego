# Compulsory process: the PROC-01..PROC-06 tests of RULES.md on the
# document the district recorded (legal_basis). Dates are integer days.
package gatekeeper

import rego.v1

doc_type := lb.type

default is_judicial_document := false

is_judicial_document if doc_type in cat.documents.judicial

default is_judicial_basis := false

is_judicial_basis if doc_type in cat.documents.judicial_basis

default is_warrant_or_order := false

is_warrant_or_order if doc_type in cat.documents.warrant_or_order

default is_subpoena := false

is_subpoena if doc_type in cat.documents.subpoena

default legal_review_approved := false

legal_review_approved if input.legal_review == "approved"

default court_issued := false

# PROC-01: issued by a court (federal or state), not DHS, ICE, CBP, USCIS, EOIR.
# issuing_court arrives normalized like agency codes (upper case, "-").
court_issued if {
	lb.issuing_court != ""
	lb.jurisdiction != ""
	not lb.signed_by in cat.documents.immigration_signers
	not regex.match(cat.documents.non_court_issuer_pattern, lb.issuing_court)
}

default judge_signed := false

# PROC-02: a warrant or order is signed by a judge or magistrate.
judge_signed if lb.signed_by in cat.documents.judicial_signers

default issued_in_future := false

# PROC-03: in date, computed on calendar days (RULES.md, date rules).
issued_in_future if {
	is_number(lb.issued_day)
	lb.issued_day > input.as_of_day
}

default execute_by_holds := false

execute_by_holds if not is_number(lb.execute_by_day)

execute_by_holds if input.as_of_day <= lb.execute_by_day

default in_date := false

# California search warrant: valid through issued + 10 days (PC 1534).
in_date if {
	doc_type == "judicial_search_warrant"
	lb.jurisdiction == "CA"
	is_number(lb.issued_day)
	input.as_of_day <= lb.issued_day + cat.thresholds.ca_search_warrant_days
	execute_by_holds
}

# Federal (and other) search warrants: through execute_by, inclusive.
in_date if {
	doc_type == "judicial_search_warrant"
	lb.jurisdiction != "CA"
	is_number(lb.execute_by_day)
	input.as_of_day <= lb.execute_by_day
}

in_date if {
	is_subpoena
	is_number(lb.return_day)
	input.as_of_day < lb.return_day
}

# Arrest warrants do not expire (they are never a basis for records anyway:
# IMM-12 / GEN-01); only one issued after as_of is out of date.
in_date if doc_type == "judicial_arrest_warrant"

# Court order: as written; otherwise legal review decides.
in_date if {
	doc_type == "court_order"
	execute_by_holds
}

default names_student := false

# PROC-04: names this student, by id or by name and date of birth.
names_student if {
	not input.is_bulk
	some named in lb.named_students
	named.id != ""
	named.id == student.id
}

names_student if {
	not input.is_bulk
	some named in lb.named_students
	named.name_key != ""
	named.name_key == student.name_key
	is_number(named.dob_day)
	named.dob_day == student.dob_day
}

default identity_ambiguous := false

# The name matches but the other identifiers do not: ambiguous (IMM-12A).
identity_ambiguous if {
	not names_student
	not input.is_bulk
	student.name_key != ""
	some named in lb.named_students
	named.name_key == student.name_key
}

fields_in_scope := {f | is_array(lb.fields_in_scope); some f in input.fields; f in lb.fields_in_scope}

fields_out_of_scope := {f | some f in input.fields; not f in fields_in_scope}

default covers_a_field := false

covers_a_field if count(fields_in_scope) > 0

default subpoena_form_ok := false

# PROC-05: a subpoena carries the court's seal and a clerk's or attorney's signature.
subpoena_form_ok if {
	lb.seal == true
	lb.signed_by in cat.documents.subpoena_signers
}

proc_failures contains "PROC-01" if not court_issued

proc_failures contains "PROC-02" if {
	is_warrant_or_order
	not judge_signed
}

proc_failures contains "PROC-03" if not in_date

proc_failures contains "PROC-03" if issued_in_future

proc_failures contains "PROC-04" if not names_student

proc_failures contains "PROC-04" if not covers_a_field

proc_failures contains "PROC-05" if {
	is_subpoena
	not subpoena_form_ok
}

proc_order := ["PROC-01", "PROC-02", "PROC-03", "PROC-04", "PROC-05"]

failed_procs := [p | some p in proc_order; p in proc_failures]

# The tests a valid document passed, listed with IMM-10.
passed_procs := [p | some p in proc_order; p in applicable_procs; not p in proc_failures]

applicable_procs contains "PROC-01"

applicable_procs contains "PROC-02" if is_warrant_or_order

applicable_procs contains "PROC-03"

applicable_procs contains "PROC-04"

applicable_procs contains "PROC-05" if is_subpoena

default process_valid := false

process_valid if {
	is_judicial_basis
	count(proc_failures) == 0
}

default nondisclosure_ordered := false

nondisclosure_ordered if lb.nondisclosure_order == true

default ferpa9n_process := false

# FERPA-9N: a grand-jury subpoena, or a law-enforcement subpoena with a
# non-disclosure order: no parent notice, sealed log.
ferpa9n_process if doc_type == "grand_jury_subpoena"

ferpa9n_process if {
	is_subpoena
	nondisclosure_ordered
	is_police
}

default return_too_soon := false

return_too_soon if {
	is_number(lb.return_day)
	lb.return_day - input.as_of_day < cat.thresholds.subpoena_min_notice_days
}

default notice_too_short := false

# FERPA-9T: a parent notice is owed and the return date leaves too little time.
notice_too_short if {
	is_subpoena
	not ferpa9n_process
	return_too_soon
}

default imm_notice_too_short := false

# The same test in an immigration context, where only a non-disclosure order
# removes the notice (IMM-10).
imm_notice_too_short if {
	is_subpoena
	not nondisclosure_ordered
	return_too_soon
}
