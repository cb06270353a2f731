#!/usr/bin/env bash
# Recreates the certificate-path fixtures of tests/sign/cert_path_test.ts and
# the OpenSSL oracle verdicts in expected.json. Needs bash and openssl (plus
# coreutils' date); run it from anywhere:
#
#   bash tests/testdata/cert_paths/generate.sh
#
# Every case is a folder <case>/ with root.pem (the trust anchor), int.pem
# (the intermediates, the leaf's issuer first; empty when the root issues the
# leaf) and leaf.pem; all leaves share the key leaf.key (EC P-256, PKCS#8).
# Validity windows are fixed (2024-01-01 to 2099-12-31 unless a case is about
# time), so the verdicts hold for decades. The oracle is
#
#   openssl verify -x509_strict [-purpose codesign] -attime <leaf notBefore> \
#     -CAfile root.pem [-untrusted int.pem] leaf.pem
#
# at the leaf's notBefore, the time model_signing's certificate verifier uses.
# `-purpose codesign` exists from OpenSSL 3.2 on; older versions run without a
# purpose, and expected.json records which was used.
set -euo pipefail
umask 022

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

START=20240101000000Z
END=20991231235959Z

# The cases, in the order expected.json lists them. cert_path_test.ts reads
# this list and checks that expected.json and the folders match it.
CASES=(
  good
  direct
  leaf-eku-only
  leaf-no-digital-signature
  leaf-no-key-usage-or-eku
  leaf-eku-server-auth
  leaf-eku-any
  leaf-critical-skid
  ca-not-ca
  ca-no-basic-constraints
  ca-no-keycertsign
  pathlen0-direct
  pathlen0-intermediate
  pathlen0-self-issued
  root-pathlen0
  critical-unknown-leaf
  critical-unknown-int
  critical-unknown-root
  nc-email-permitted
  nc-email-not-permitted
  nc-email-excluded
  nc-email-subdomain
  nc-email-mailbox
  nc-subject-email
  nc-uri-permitted
  nc-uri-not-permitted
  nc-uri-not-subdomain
  nc-uri-excluded
  nc-uri-excluded-userinfo
  nc-dns-permitted
  nc-dns-excluded
  nc-dirname-permitted
  nc-dirname-not-permitted
  nc-intermediate-subject
  nc-ip-permitted
  nc-ip-not-permitted
  nc-unsupported-form
  nc-unsupported-absent
  nc-root
  time-leaf-expired-now
  time-leaf-future
  time-leaf-inverted
  time-int-expired
  time-int-not-yet-valid
  time-root-expired
)

# --- keys and a throwaway `openssl ca` setup ---------------------------------

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$WORK/$1.key"; }
key root
key ca
key ca2
key leaf

mkdir "$WORK/new"
: >"$WORK/index.txt"
echo 01 >"$WORK/serial"
cat >"$WORK/ca.cnf" <<CNF
[ ca ]
default_ca = d
[ d ]
database = $WORK/index.txt
new_certs_dir = $WORK/new
serial = $WORK/serial
default_md = sha256
policy = any_dn
unique_subject = no
copy_extensions = none
email_in_dn = yes
[ any_dn ]
organizationName = optional
commonName = optional
emailAddress = optional
CNF

# Profiles; each call adds its own lines after them.
CA_EXT='basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash'
LEAF_KU='keyUsage = critical,digitalSignature'
LEAF_EKU='extendedKeyUsage = codeSigning'
LEAF_ID='subjectKeyIdentifier = hash'
SAN='subjectAltName = email:a@example.com'

# issue OUT SUBJECT KEY ISSUER(self|cert name) ISSUER_KEY START END EXTENSIONS [EXTRA SECTIONS]
issue() {
  local out=$1 subject=$2 keyname=$3 issuer=$4 issuer_key=$5 start=$6 end=$7 ext=$8 extra=${9:-}
  {
    echo "[ e ]"
    echo "$ext"
    [ "$issuer" = self ] || echo "authorityKeyIdentifier = keyid:always"
    echo "$extra"
  } >"$WORK/ext.cnf"
  openssl req -new -key "$WORK/$keyname.key" -subj "$subject" -out "$WORK/req.csr"
  local sign=(-cert "$WORK/$issuer.pem" -keyfile "$WORK/$issuer_key.key")
  [ "$issuer" = self ] && sign=(-selfsign -keyfile "$WORK/$keyname.key")
  openssl ca -batch -config "$WORK/ca.cnf" -rand_serial -preserveDN -notext "${sign[@]}" \
    -in "$WORK/req.csr" -out "$WORK/$out.pem" -startdate "$start" -enddate "$end" \
    -extfile "$WORK/ext.cnf" -extensions e 2>"$WORK/ca.log" || { cat "$WORK/ca.log" >&2; exit 1; }
}

leaf_ext() { printf '%s\n' "$LEAF_KU" "$LEAF_EKU" "$LEAF_ID" "${1:-$SAN}"; }

# The shared root and intermediate.
issue root "/CN=Test Root" root self root $START $END "$CA_EXT"
issue int "/CN=Test Intermediate" ca root root $START $END "$CA_EXT"

# save CASE ROOT "INTERMEDIATES..." LEAF
save() {
  local dir="$HERE/$1" c
  rm -rf "$dir"
  mkdir -p "$dir"
  cp "$WORK/$2.pem" "$dir/root.pem"
  : >"$dir/int.pem"
  for c in $3; do cat "$WORK/$c.pem" >>"$dir/int.pem"; done
  cp "$WORK/$4.pem" "$dir/leaf.pem"
}

# simple CASE LEAF_EXTENSIONS [SUBJECT] [EXTRA]: a leaf under the shared intermediate.
simple() {
  issue "leaf-$1" "${3:-/CN=Test Leaf}" leaf int ca $START $END "$2" "${4:-}"
  save "$1" root int "leaf-$1"
}

# ca_case CASE INTERMEDIATE_EXTENSIONS [LEAF_EXTENSIONS] [LEAF_SUBJECT] [EXTRA]:
# the leaf under an intermediate of its own.
ca_case() {
  issue "int-$1" "/CN=Test Intermediate" ca root root $START $END "$2" "${5:-}"
  issue "leaf-$1" "${4:-/CN=Test Leaf}" leaf "int-$1" ca $START $END "${3:-$(leaf_ext)}"
  save "$1" root "int-$1" "leaf-$1"
}

# --- the cases ---------------------------------------------------------------

simple good "$(leaf_ext)"
issue leaf-direct "/CN=Test Leaf" leaf root root $START $END "$(leaf_ext)"
save direct root "" leaf-direct

simple leaf-eku-only "$(printf '%s\n' "$LEAF_EKU" "$LEAF_ID" "$SAN")"
simple leaf-no-digital-signature "$(printf '%s\n' 'keyUsage = critical,keyEncipherment' \
  "$LEAF_EKU" "$LEAF_ID" "$SAN")"
simple leaf-no-key-usage-or-eku "$(printf '%s\n' "$LEAF_ID" "$SAN")"
simple leaf-eku-server-auth "$(printf '%s\n' "$LEAF_KU" 'extendedKeyUsage = serverAuth' \
  "$LEAF_ID" "$SAN")"
simple leaf-eku-any "$(printf '%s\n' "$LEAF_KU" 'extendedKeyUsage = anyExtendedKeyUsage' \
  "$LEAF_ID" "$SAN")"
simple leaf-critical-skid "$(printf '%s\n' "$LEAF_KU" "$LEAF_EKU" 'subjectKeyIdentifier = critical,hash' "$SAN")"

ca_case ca-not-ca 'basicConstraints = critical,CA:FALSE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash'
ca_case ca-no-basic-constraints 'keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash'
ca_case ca-no-keycertsign 'basicConstraints = critical,CA:TRUE
keyUsage = critical,digitalSignature
subjectKeyIdentifier = hash'

PATHLEN0='basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash'
ca_case pathlen0-direct "$PATHLEN0"
# root -> int (pathlen 0) -> int2 (another CA) -> leaf
issue int-p0 "/CN=Test Intermediate" ca root root $START $END "$PATHLEN0"
issue int2-p0 "/CN=Test Intermediate 2" ca2 int-p0 ca $START $END "$CA_EXT"
issue leaf-p0 "/CN=Test Leaf" leaf int2-p0 ca2 $START $END "$(leaf_ext)"
save pathlen0-intermediate root "int2-p0 int-p0" leaf-p0
# root -> int (pathlen 0) -> int again (same name, new key: self-issued) -> leaf
issue int2-si "/CN=Test Intermediate" ca2 int-p0 ca $START $END "$CA_EXT"
issue leaf-si "/CN=Test Leaf" leaf int2-si ca2 $START $END "$(leaf_ext)"
save pathlen0-self-issued root "int2-si int-p0" leaf-si
# a root with pathlen 0 above an intermediate
issue root-p0 "/CN=Test Root" root self root $START $END "$PATHLEN0"
issue int-rp0 "/CN=Test Intermediate" ca root-p0 root $START $END "$CA_EXT"
issue leaf-rp0 "/CN=Test Leaf" leaf int-rp0 ca $START $END "$(leaf_ext)"
save root-pathlen0 root-p0 int-rp0 leaf-rp0

UNKNOWN='1.3.6.1.4.1.99999.1 = critical,ASN1:NULL'
simple critical-unknown-leaf "$(leaf_ext)
$UNKNOWN"
ca_case critical-unknown-int "$CA_EXT
$UNKNOWN"
issue root-cu "/CN=Test Root" root self root $START $END "$CA_EXT
$UNKNOWN"
issue int-cu "/CN=Test Intermediate" ca root-cu root $START $END "$CA_EXT"
issue leaf-cu "/CN=Test Leaf" leaf int-cu ca $START $END "$(leaf_ext)"
save critical-unknown-root root-cu int-cu leaf-cu

# nameConstraints on the intermediate
nc() { printf '%s\n' "$CA_EXT" "nameConstraints = critical,$1"; }
ca_case nc-email-permitted "$(nc 'permitted;email:example.com')"
ca_case nc-email-not-permitted "$(nc 'permitted;email:example.com')" \
  "$(leaf_ext 'subjectAltName = email:a@evil.com')"
ca_case nc-email-excluded "$(nc 'excluded;email:evil.com')" \
  "$(leaf_ext 'subjectAltName = email:a@evil.com')"
ca_case nc-email-subdomain "$(nc 'permitted;email:.example.com')" \
  "$(leaf_ext 'subjectAltName = email:a@dev.example.com')"
ca_case nc-email-mailbox "$(nc 'permitted;email:ci@example.com')"
# An emailAddress in the subject DN counts as an rfc822Name too.
ca_case nc-subject-email "$(nc 'permitted;email:example.com')" "$(leaf_ext)" \
  "/CN=Test Leaf/emailAddress=x@evil.com"
WORKFLOW='https://github.com/acme/model/.github/workflows/sign.yml@refs/heads/main'
ca_case nc-uri-permitted "$(nc 'permitted;URI:github.com')" \
  "$(leaf_ext "subjectAltName = URI:$WORKFLOW")"
ca_case nc-uri-not-permitted "$(nc 'permitted;URI:github.com')" \
  "$(leaf_ext 'subjectAltName = URI:https://gitlab.com/acme/model//.gitlab-ci.yml@refs/heads/main')"
ca_case nc-uri-not-subdomain "$(nc 'permitted;URI:.example.com')" \
  "$(leaf_ext 'subjectAltName = URI:https://example.com/ci')"
ca_case nc-uri-excluded "$(nc 'excluded;URI:evil.example.com')" \
  "$(leaf_ext 'subjectAltName = URI:https://evil.example.com/ci')"
# The host of a URI comes after any userinfo and before any port (RFC 3986).
ca_case nc-uri-excluded-userinfo "$(nc 'excluded;URI:evil.example.com')" \
  "$(leaf_ext 'subjectAltName = URI:https://user@evil.example.com:8443/ci')"
ca_case nc-dns-permitted "$(nc 'permitted;DNS:example.com')" \
  "$(leaf_ext 'subjectAltName = DNS:build.example.com, email:a@example.com')"
ca_case nc-dns-excluded "$(nc 'excluded;DNS:evil.example.com')" \
  "$(leaf_ext 'subjectAltName = DNS:host.evil.example.com')"
ca_case nc-dirname-permitted "$(nc 'permitted;dirName:nc_dir')" "$(leaf_ext)" \
  "/O=Acme/CN=Test Leaf" $'[ nc_dir ]\nO = Acme'
ca_case nc-dirname-not-permitted "$(nc 'permitted;dirName:nc_dir')" "$(leaf_ext)" \
  "/O=Other/CN=Test Leaf" $'[ nc_dir ]\nO = Acme'
# The constraints of int apply to int2 below it too: int2's subject is outside.
issue int-ncdn "/CN=Test Intermediate" ca root root $START $END \
  "$(nc 'permitted;dirName:nc_dir')" $'[ nc_dir ]\nO = Acme'
issue int2-ncdn "/O=Other/CN=Test Intermediate 2" ca2 int-ncdn ca $START $END "$CA_EXT"
issue leaf-ncdn "/O=Acme/CN=Test Leaf" leaf int2-ncdn ca2 $START $END "$(leaf_ext)"
save nc-intermediate-subject root "int2-ncdn int-ncdn" leaf-ncdn
ca_case nc-ip-permitted "$(nc 'permitted;IP:10.0.0.0/255.0.0.0')" \
  "$(leaf_ext 'subjectAltName = IP:10.1.2.3, email:a@example.com')"
ca_case nc-ip-not-permitted "$(nc 'permitted;IP:10.0.0.0/255.0.0.0')" \
  "$(leaf_ext 'subjectAltName = IP:192.168.1.1')"
# registeredID: a name form neither we nor OpenSSL check, so a leaf that has
# one is refused, and a leaf without one is not affected.
ca_case nc-unsupported-form "$(nc 'permitted;RID:1.2.3.4')" \
  "$(leaf_ext 'subjectAltName = RID:1.2.3.4, email:a@example.com')"
ca_case nc-unsupported-absent "$(nc 'permitted;RID:1.2.3.4')"
# Constraints on the trust anchor apply too (as OpenSSL applies them).
issue root-nc "/CN=Test Root" root self root $START $END "$(nc 'permitted;email:example.com')"
issue int-nc "/CN=Test Intermediate" ca root-nc root $START $END "$CA_EXT"
issue leaf-nc "/CN=Test Leaf" leaf int-nc ca $START $END \
  "$(leaf_ext 'subjectAltName = email:a@evil.com')"
save nc-root root-nc int-nc leaf-nc

# Validity: checked at the leaf's notBefore, for every certificate.
issue leaf-old "/CN=Test Leaf" leaf int ca 20240101000000Z 20240102000000Z "$(leaf_ext)"
save time-leaf-expired-now root int leaf-old
issue leaf-future "/CN=Test Leaf" leaf int ca 20980101000000Z 20990101000000Z "$(leaf_ext)"
save time-leaf-future root int leaf-future
issue leaf-inverted "/CN=Test Leaf" leaf int ca 20250101000000Z 20241231000000Z "$(leaf_ext)"
save time-leaf-inverted root int leaf-inverted
issue int-exp "/CN=Test Intermediate" ca root root 20240101000000Z 20240630000000Z "$CA_EXT"
issue leaf-exp "/CN=Test Leaf" leaf int-exp ca 20240701000000Z $END "$(leaf_ext)"
save time-int-expired root int-exp leaf-exp
issue int-nyv "/CN=Test Intermediate" ca root root 20250101000000Z $END "$CA_EXT"
issue leaf-nyv "/CN=Test Leaf" leaf int-nyv ca 20240601000000Z $END "$(leaf_ext)"
save time-int-not-yet-valid root int-nyv leaf-nyv
issue root-exp "/CN=Test Root" root self root 20240101000000Z 20240630000000Z "$CA_EXT"
issue int-rexp "/CN=Test Intermediate" ca root-exp root 20240101000000Z $END "$CA_EXT"
issue leaf-rexp "/CN=Test Leaf" leaf int-rexp ca 20240701000000Z $END "$(leaf_ext)"
save time-root-expired root-exp int-rexp leaf-rexp

cp "$WORK/leaf.key" "$HERE/leaf.key"

# --- the oracle ----------------------------------------------------------------

PURPOSE=()
PURPOSE_NAME=none
if openssl verify -help 2>&1 | grep -q codesign; then
  PURPOSE=(-purpose codesign)
  PURPOSE_NAME=codesign
fi
json() { # a JSON string
  local s=${1//\\/\\\\}
  s=${s//\"/\\\"}
  printf '"%s"' "$s"
}
{
  echo "{"
  echo "  \"openssl\": $(json "$(openssl version)"),"
  echo "  \"purpose\": $(json "$PURPOSE_NAME"),"
  echo "  \"cases\": {"
  last=${CASES[${#CASES[@]} - 1]}
  for c in "${CASES[@]}"; do
    dir="$HERE/$c"
    [ -d "$dir" ] || { echo "generate.sh: case $c was not generated" >&2; exit 1; }
    not_before=$(openssl x509 -in "$dir/leaf.pem" -noout -startdate | cut -d= -f2)
    at=$(date -u -d "$not_before" +%s)
    untrusted=()
    [ -s "$dir/int.pem" ] && untrusted=(-untrusted int.pem)
    if out=$(cd "$dir" && openssl verify -x509_strict "${PURPOSE[@]}" -attime "$at" \
      -CAfile root.pem "${untrusted[@]}" leaf.pem 2>&1); then ok=true; else ok=false; fi
    # The verdict line: "leaf.pem: OK" or the first "error N at D depth lookup: …".
    line=$(printf '%s\n' "$out" | grep -m1 -E '^(leaf.pem: OK|error [0-9]+ at)' || true)
    comma=,
    [ "$c" = "$last" ] && comma=
    # Laid out as deno fmt lays out JSON, so `deno fmt --check` passes.
    printf '    %s: {\n      "attime": %s,\n      "ok": %s,\n      "openssl": %s\n    }%s\n' \
      "$(json "$c")" "$(json "$(date -u -d "@$at" +%Y-%m-%dT%H:%M:%SZ)")" "$ok" "$(json "$line")" \
      "$comma"
  done
  echo "  }"
  echo "}"
} >"$HERE/expected.json"
echo "generate.sh: ${#CASES[@]} cases written to $HERE" >&2
