#!/bin/sh
# bench/zonecheck/run.sh: times `regdr zone check` against the DNSSEC zone
# verifiers operators use, on the same signed zones, and prints seconds,
# CPU seconds, peak RSS and ratios (issue 3, "Speed").
#
#   bench/zonecheck/run.sh [SIZES]        default SIZES: "100000 1000000"
#
# For each size N it generates (once, kept in $WORK/N) a TLD of N
# delegations signed with ECDSAP256SHA256 and NSEC (base.zone) and the next
# version differing by 1,000 delegations (next.zone), with
# `go run ./bench/zonecheck`. It runs each tool on base.zone under
# /usr/bin/time, then the incremental case: `regdr zone check next.zone
# --previous base.zone` (both files parsed, every signature verified), and
# in process the agent's path (`prof -apply`: base.zone checked in full and
# kept with its index, the IXFR difference applied with zone.Apply and the
# result checked incrementally), then the gates with the previous version
# marked verified, plus the IXFR difference between the two versions in a
# zone store (`prof -incremental -ixfr DIR`).
#
# Environment: REGDR (default bin/regdr), WORK (default /tmp/regdr-zonecheck),
# TOOLS (default "regdr kzonecheck dnssec-verify ldns-verify-zone validns").
set -eu

cd "$(dirname "$0")/../.."
SIZES=${*:-"100000 1000000"}
REGDR=${REGDR:-bin/regdr}
WORK=${WORK:-/tmp/regdr-zonecheck}
TOOLS=${TOOLS:-"regdr kzonecheck dnssec-verify ldns-verify-zone validns"}
CPUS=$(nproc)

[ -x "$REGDR" ] || { echo "run.sh: $REGDR missing: make build first (or set REGDR)" >&2; exit 2; }
for t in kzonecheck dnssec-verify ldns-verify-zone validns; do
	command -v "$t" >/dev/null || { echo "run.sh: $t not installed (apt-get install knot bind9-utils ldnsutils validns)" >&2; exit 2; }
done

# cmd TOOL FILE: the command line that checks FILE with TOOL. Every tool
# is asked to verify every signature and the NSEC chain; regdr also runs
# its other gates. validns gets all CPUs (the only other one with threads).
cmd() {
	case $1 in
	regdr) echo "$REGDR zone check $2 --origin test." ;;
	kzonecheck) echo "kzonecheck -o test. -d on $2" ;;
	dnssec-verify) echo "dnssec-verify -o test. $2" ;;
	ldns-verify-zone) echo "ldns-verify-zone $2" ;;
	validns) echo "validns -z test. -n $CPUS -s $2" ;;
	esac
}

# timed CMD...: prints "seconds peakKB exitcode cpuseconds"; the output of
# CMD goes to $WORK/last.log. CPU seconds (user+system) move less than wall
# time on a shared machine, and show what regdr's use of every core costs.
timed() {
	out=$(mktemp)
	code=0
	/usr/bin/time -f "%e %M %U %S" -o "$out" "$@" >"$WORK/last.log" 2>&1 || code=$?
	# shellcheck disable=SC2046
	set -- $(tail -n 1 "$out")
	echo "$1 $2 $code $(awk -v u="$3" -v s="$4" 'BEGIN { printf "%.2f", u + s }')"
	rm -f "$out"
}

mkdir -p "$WORK"
echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(uname -m), $CPUS CPUs, $(awk '/MemTotal/ {printf "%.0f GB", $2/1048576}' /proc/meminfo), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# kzonecheck $(kzonecheck -V 2>&1 | head -n 1 | awk '{print $NF}'); $(dnssec-verify -V 2>&1 | head -n 1); $(ldns-verify-zone -v 2>&1 | head -n 1)"
for n in $SIZES; do
	dir=$WORK/$n
	if [ ! -s "$dir/next.zone" ]; then
		mkdir -p "$dir"
		go run ./bench/zonecheck -n "$n" -dir "$dir" >&2
	fi
	recs=$(wc -l <"$dir/base.zone")
	echo
	echo "## $n delegations, $recs records, $(du -m "$dir/base.zone" | cut -f1) MB"
	echo
	echo "| tool | command | seconds | CPU seconds | peak RSS MB | exit | regdr faster by | regdr memory ratio |"
	echo "|---|---|---|---|---|---|---|---|"
	rs=""
	rm=""
	for t in $TOOLS; do
		c=$(cmd "$t" "$dir/base.zone")
		# shellcheck disable=SC2086,SC2046
		set -- $(timed $c)
		s=$1 kb=$2 code=$3 cpu=$4
		mb=$((kb / 1024))
		note=""
		if [ "$t" = validns ]; then
			note=" ($(grep -o 'signatures verified: *[0-9]*' "$WORK/last.log" || echo '? signatures verified'))"
		fi
		if [ "$t" = regdr ]; then
			rs=$s rm=$kb
			echo "| $t | \`$c\` | $s | $cpu | $mb | $code | — | — |"
		else
			sp=$(awk -v a="$s" -v b="$rs" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else print "?" }')
			mr=$(awk -v a="$rm" -v b="$kb" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "?" }')
			echo "| $t$note | \`$c\` | $s | $cpu | $mb | $code | $sp | $mr |"
		fi
	done
	echo
	echo "Incremental: next.zone differs from base.zone by 1,000 delegations."
	echo
	echo "| case | command | seconds | CPU seconds | peak RSS MB | exit |"
	echo "|---|---|---|---|---|---|"
	c="$REGDR zone check $dir/next.zone --origin test. --previous $dir/base.zone"
	# shellcheck disable=SC2086,SC2046
	set -- $(timed $c)
	echo "| regdr CLI: both files parsed, every signature verified | \`$c\` | $1 | $4 | $(($2 / 1024)) | $3 |"
	go build -o "$WORK/prof" ./bench/zonecheck/prof
	for mode in "-apply" "-incremental -ixfr $WORK/store-$n"; do
		rm -rf "$WORK/store-$n"
		c="$WORK/prof -zone $dir/next.zone -previous $dir/base.zone $mode"
		echo
		echo "In process, \`$c\`:"
		echo
		echo '```'
		# shellcheck disable=SC2086
		$c 2>&1 | sed 's/^[0-9/]* [0-9:]* //'
		echo '```'
	done
	rm -rf "$WORK/store-$n"
done
