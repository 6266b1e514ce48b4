# Shared by bench/pubsub/run.sh and bench/pubsub/cluster.sh (sourced from the repository
# root): reading the load tool's lines. The helpers every benchmark uses (need, wait_port,
# median, div, stop_server, start_postgres) are bench/common.sh's.

source bench/common.sh

# load_field KEY: the value of KEY=value in a pubsub-load line on stdin (its lines are
# words, not JSON as bench/common.sh's field reads).
load_field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }
