package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"

	"github.com/regdr/regdr/internal/approval"
)

// signFlags are how an operator signs an approval: with a private key file
// regdr reads (unencrypted keys only), or with a signature they made
// themselves with `ssh-keygen -Y sign -n regdr` over the printed message
// (passphrase-protected keys, hardware keys, ssh-agent).
type signFlags struct {
	key, signature string
	printMessage   bool
	operator       string
}

func (f *signFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.key, "key", "", "SSH private key to sign with (ssh-ed25519 or ecdsa; unencrypted)")
	cmd.Flags().StringVar(&f.signature, "signature", "", "an SSH signature made with: ssh-keygen -Y sign -n regdr -f KEY MESSAGE-FILE")
	cmd.Flags().BoolVar(&f.printMessage, "print-message", false, "print the exact text to sign (for ssh-keygen -Y sign) and exit")
	cmd.Flags().StringVar(&f.operator, "operator", "", "who is approving: an operator name from the config (default $REGDR_OPERATOR or the OS user)")
}

// approval builds the operator's signed approval of s, or prints the
// message and returns done=true when --print-message was given.
func (f *signFlags) approval(cmd *cobra.Command, s approval.Subject) (a approval.Approval, done bool, err error) {
	msg := s.Message()
	if f.printMessage {
		_, err := cmd.OutOrStdout().Write(msg)
		return a, true, err
	}
	var armored []byte
	switch {
	case f.key != "" && f.signature != "":
		return a, false, usageErr(errors.New("give --key or --signature, not both"))
	case f.signature != "":
		if armored, err = os.ReadFile(f.signature); err != nil {
			return a, false, usageErr(fmt.Errorf("--signature: %w", err))
		}
	case f.key != "":
		pem, err := os.ReadFile(f.key)
		if err != nil {
			return a, false, usageErr(fmt.Errorf("--key: %w", err))
		}
		signer, err := ssh.ParsePrivateKey(pem)
		var pp *ssh.PassphraseMissingError
		if errors.As(err, &pp) {
			return a, false, usageErr(fmt.Errorf("--key %s is passphrase-protected: sign with ssh-keygen instead:\n  %s --print-message > msg && ssh-keygen -Y sign -n %s -f %s msg && %s --signature msg.sig",
				f.key, cmd.CommandPath(), approval.Namespace, f.key, cmd.CommandPath()))
		}
		if err != nil {
			return a, false, usageErr(fmt.Errorf("--key %s: %w", f.key, err))
		}
		if armored, err = approval.Sign(signer, approval.Namespace, msg); err != nil {
			return a, false, err
		}
	default:
		return a, false, usageErr(errors.New("an approval must be signed: give --key FILE or --signature FILE (or --print-message to see what to sign)"))
	}
	return approval.Approval{Operator: operatorName(f.operator), Signature: strings.TrimSpace(string(armored)) + "\n", At: time.Now().UTC()}, false, nil
}
