#!/usr/bin/env bash
# make demo: the lab on this machine, under write load, and what an operator sees.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=./bin/regdr
DIR=${REGDR_LAB_DIR:-/tmp/regdr-lab}

if ! $BIN lab status --dir "$DIR" >/dev/null 2>&1; then :; fi
if [ -f "$DIR/lab.json" ]; then
  echo "== stopping the previous lab in $DIR"
  $BIN lab down --dir "$DIR" || true
fi

install=""
if [ "$(id -u)" = 0 ]; then install="--install"; fi
echo "== regdr lab up --dir $DIR $install"
$BIN lab up --fresh --log-level warn --dir "$DIR" --domains "${DOMAINS:-10000}" $install

export REGDR_CONFIG="$DIR/regdr.yaml"
echo
echo "== registry writes under load for 10 s (regdr lab load --rate 20)"
$BIN lab load --log-level warn --dir "$DIR" --rate 20 --duration 10s --journal "$DIR/load.jsonl"

echo
echo "== regdr status"
sleep 2
$BIN status

secondary=$(sed -n 's/.*"secondary": "\([0-9.]*\):\([0-9]*\)".*/\1 \2/p' "$DIR/lab.json")
set -- $secondary
tld=$(sed -n 's/.*"tld": "\([^"]*\)".*/\1/p' "$DIR/lab.json")
echo
echo "== kdig @$1 -p $2 $tld SOA +short   (Knot, the public secondary)"
kdig @"$1" -p "$2" "$tld" SOA +short

echo
echo "== a full drill: planned switchover to osaka and back, under registry load"
echo "   (regdr drill run drills/scenarios/planned-switchover-and-back.yaml)"
$BIN drill run drills/scenarios/planned-switchover-and-back.yaml --lab-dir "$DIR" --yes --operator alice --log-level error

echo
echo "== regdr status after the drill"
$BIN status

echo
echo "The drill's reports (JSON, Markdown, and an HTML page with its timeline) are in $DIR/drills/:"
ls -1 "$DIR"/drills/*.html
echo "The lab keeps running. Stop it with: $BIN lab down --dir $DIR"
