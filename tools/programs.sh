#!/usr/bin/env bash
# Read tools/programs.tsv, the declared list of the external programs the book
# starts, with their Debian packages and purposes (base, book, live, test).
#
#   tools/programs.sh packages PURPOSE...  the Debian packages of those purposes, one line
#   tools/programs.sh check PURPOSE...     check every program of those purposes with
#                                          `command -v` (sbin folders included); prints
#                                          one line per missing program with its package
#                                          and exits 1 when one is missing
#   (pip programs are looked for in $VENV/bin, default .venv/bin)
#   tools/programs.sh list PURPOSE...      program, package and purpose, one per line
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
LIST=${LAB_PROGRAMS_LIST:-$here/programs.tsv}
# Programs in /usr/sbin are not on a normal user's PATH but are still installed.
SEARCH_PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

usage() { echo "usage: $0 packages|check|list PURPOSE..." >&2; exit 2; }
[ -r "$LIST" ] || { echo "$0: cannot read the declared list $LIST" >&2; exit 2; }
[ $# -ge 2 ] || usage
action=$1; shift
for purpose in "$@"; do
  case "$purpose" in base|book|live|test|pip) ;; *) echo "unknown purpose '$purpose' (base, book, live, test, pip)" >&2; exit 2 ;; esac
done

# Print "program<TAB>package<TAB>purpose" for every program of the purposes asked for.
rows() {
  local programs package purpose _why p wanted
  while IFS=$'\t' read -r programs package purpose _why; do
    case "$programs" in ''|'#'*) continue ;; esac
    for wanted in "$@"; do
      [ "$purpose" = "$wanted" ] || continue
      IFS=',' read -ra list <<< "$programs"
      for p in "${list[@]}"; do printf '%s\t%s\t%s\n' "$p" "$package" "$purpose"; done
    done
  done < "$LIST"
}

present() {
  case "$1" in
    /*) [ -e "$1" ] ;;
    *) # shellcheck disable=SC2015
       if [ "$2" = pip ]; then [ -x "${VENV:-.venv}/bin/$1" ]; return; fi
       PATH="$SEARCH_PATH" command -v "$1" >/dev/null 2>&1 ;;
  esac
}

case "$action" in
  list) rows "$@" ;;
  packages) rows "$@" | cut -f2 | sort -u | tr '\n' ' ' | sed 's/ $//'; echo ;;
  check)
    missing=0 checked=0
    while IFS=$'\t' read -r program package purpose; do
      checked=$((checked + 1))
      if ! present "$program" "$purpose"; then
        printf 'missing %s program: %s (Debian package %s: apt-get install %s)\n' "$purpose" "$program" "$package" "$package"
        missing=$((missing + 1))
      fi
    done < <(rows "$@")
    [ "$checked" -gt 0 ] || { echo "$0: $LIST declares no program of purpose $*" >&2; exit 2; }
    if [ "$missing" -gt 0 ]; then
      printf '%d of %d declared programs (%s) are missing\n' "$missing" "$checked" "$*"
      exit 1
    fi
    printf 'all %d declared programs (%s) are present\n' "$checked" "$*" ;;
  *) usage ;;
esac
