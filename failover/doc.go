// Package failover will plan, approve and execute switchover, failover and
// failback (issue 4). Its shape is fixed by ARCHITECTURE.md and STYLE.md: a
// pure step machine (plan, journal, observations -> next actions) whose
// driver journals each step in etcd before doing it, so an interrupted run
// resumes; the active-site record changes only by store.CASActive on the
// epoch. It calls replicator, keys and drills through small interfaces it
// declares itself.
package failover
