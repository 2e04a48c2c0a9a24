package lab

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/regdr/regdr/internal/config"
)

// Operators are the lab's two people, so that every two-person approval
// (gate overrides, failover plans) can be exercised on one machine. Their
// SSH keys are generated per lab under <dir>/operators/<name> (0600).
var Operators = []string{"alice", "bob"}

// OperatorKey is the private SSH key file of a lab operator.
func (l *Lab) OperatorKey(name string) string {
	return filepath.Join(l.State.Dir, "operators", name)
}

func planOperators(cfg *config.Config, dir string) error {
	d := filepath.Join(dir, "operators")
	if err := os.MkdirAll(d, 0o700); err != nil {
		return err
	}
	for _, name := range Operators {
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return err
		}
		block, err := ssh.MarshalPrivateKey(priv, name+"@regdr-lab")
		if err != nil {
			return fmt.Errorf("lab operator %s key: %w", name, err)
		}
		if err := os.WriteFile(filepath.Join(d, name), pem.EncodeToMemory(block), 0o600); err != nil {
			return err
		}
		sp, err := ssh.NewPublicKey(pub)
		if err != nil {
			return err
		}
		line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp))) + " " + name + "@regdr-lab"
		if err := os.WriteFile(filepath.Join(d, name+".pub"), []byte(line+"\n"), 0o644); err != nil {
			return err
		}
		cfg.Operators = append(cfg.Operators, config.Operator{Name: name, SSHPublicKey: line})
	}
	return nil
}
