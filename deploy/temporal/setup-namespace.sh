#!/bin/sh
# One-shot, after the frontend is healthy: the namespace (its retention is how long a finished
# generation, and so its idempotency key, is remembered) and the project's search attributes.
# Only what is missing is created, so a rerun is harmless.
set -eu

: "${TEMPORAL_ADDRESS:?TEMPORAL_ADDRESS is required}"
: "${SEARCH_ATTRIBUTES:?SEARCH_ATTRIBUTES is required (Name=Type pairs)}"
NAMESPACE="${TEMPORAL_NAMESPACE:-default}"
RETENTION="${TEMPORAL_NAMESPACE_RETENTION:-168h}"

# until_ok WHAT CMD...: polls CMD once a second until it succeeds, for at most two minutes.
until_ok() {
    what="$1"
    shift
    attempt=0
    until "$@" >/dev/null 2>&1; do
        attempt=$((attempt + 1))
        if [ "$attempt" -ge 120 ]; then
            echo "gave up waiting for $what after $attempt tries" >&2
            "$@"
            return 1
        fi
        sleep 1
    done
}

# The port opens before the frontend can serve namespace calls.
until_ok "temporal at $TEMPORAL_ADDRESS to be healthy" temporal operator cluster health

if temporal operator namespace describe --namespace "$NAMESPACE" >/dev/null 2>&1; then
    echo "namespace $NAMESPACE exists"
else
    temporal operator namespace create --namespace "$NAMESPACE" --retention "$RETENTION"
    echo "namespace $NAMESPACE created (retention $RETENTION)"
fi
# A new namespace reaches the frontend's namespace cache some seconds after it is created.
until_ok "namespace $NAMESPACE to be served" \
    temporal operator search-attribute list --namespace "$NAMESPACE"

existing="$(temporal operator search-attribute list --namespace "$NAMESPACE")"
for pair in $SEARCH_ATTRIBUTES; do
    name="${pair%%=*}"
    type="${pair#*=}"
    if printf '%s\n' "$existing" | awk '{print $1}' | grep -qx "$name"; then
        echo "search attribute $name exists"
    else
        temporal operator search-attribute create --namespace "$NAMESPACE" --name "$name" --type "$type"
        echo "search attribute $name ($type) created"
    fi
done
