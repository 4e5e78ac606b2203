#!/bin/sh
# token.sh unplug|plug LABEL — for rehearsals: takes the SoftHSM2 token
# labeled LABEL out of $SOFTHSM2_CONF's token directory (as if an officer had
# not come), or puts it back.
set -eu
dir=$(sed -n 's/^directories\.tokendir *= *//p' "$SOFTHSM2_CONF")
away="$dir.away"
mkdir -p "$away"
case $1 in
unplug) from=$dir to=$away ;;
plug) from=$away to=$dir ;;
*) echo "usage: token.sh unplug|plug LABEL" >&2; exit 2 ;;
esac
for t in "$from"/*/; do
	if [ -f "$t/token.object" ] && grep -qa -- "$2" "$t/token.object"; then
		mv "$t" "$to/"
		exit 0
	fi
done
echo "token.sh: no token $2 in $from" >&2
exit 1
