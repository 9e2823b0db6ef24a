#!/bin/sh
# Once per Temporal cluster, and safe to run again: the closeloop namespace and closeloop's custom search
# attributes (the same as deploy/README.md's step 2). Run by compose's temporal-setup service in the
# temporalio/admin-tools image; TEMPORAL_ADDRESS and CLOSELOOP_NAMESPACE come from its environment.
set -eu
address="${TEMPORAL_ADDRESS:-temporal:7233}"
namespace="${CLOSELOOP_NAMESPACE:-closeloop}"

tries=0
until temporal operator cluster health --address "$address" >/dev/null 2>&1; do
  tries=$((tries + 1))
  [ "$tries" -lt 60 ] || { echo "Temporal at $address is not serving" >&2; exit 1; }
  sleep 2
done

if ! temporal operator namespace describe --address "$address" --namespace "$namespace" >/dev/null 2>&1; then
  temporal operator namespace create --address "$address" --namespace "$namespace" --retention 30d
fi

existing="$(temporal operator search-attribute list --address "$address" --namespace "$namespace")"
for attr in CloseloopStage=Keyword CloseloopStageDue=Datetime CloseloopOwner=Keyword \
            CloseloopSeverity=Keyword CloseloopService=KeywordList CloseloopStalled=Bool; do
  name="${attr%=*}"
  if printf '%s\n' "$existing" | grep -qw "$name"; then
    echo "search attribute $name: present"
  else
    temporal operator search-attribute create --address "$address" --namespace "$namespace" \
      --name "$name" --type "${attr#*=}"
  fi
done
