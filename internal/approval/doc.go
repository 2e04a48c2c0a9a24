// Package approval holds regdr's two-person rule: operators approve a
// subject (a gate override for one zone version, a failover plan) by
// signing its canonical description with their SSH key, approvals are kept
// in etcd one per operator, and Check counts them.
//
// Why (INCIDENTS.md 2, .se 2009): the block on unusually large zone changes
// fired and was overridden by one inexperienced administrator after a
// visual check. Here an override needs approvals from distinct configured
// operators, never the one who asked, each signed with that operator's
// own key over exactly what is approved (zone, serial and digest, or the
// plan's hash) and its expiry, and every approval or refusal leaves an
// audit entry.
//
// Signatures are OpenSSH "SSHSIG" signatures (PROTOCOL.sshsig) in the
// namespace "regdr", so an operator approves with the key they already
// have:
//
//	# subject.txt holds exactly the bytes of Subject.Message
//	ssh-keygen -Y sign -n regdr -f ~/.ssh/id_ed25519 subject.txt
//	# subject.txt.sig is the Approval's Signature
//
// and anyone can check a stored approval with ssh-keygen -Y verify and an
// allowed_signers file built from the operators in the config.
//
// What a signature does not prove: that the subject is sane. The digest
// binds the approval to one zone version or plan; the gates and the
// preflight still decide whether that version or plan is acceptable.
package approval
