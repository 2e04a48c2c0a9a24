package config

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ErrUnknownTSIGKey is returned by TSIG for a name not in tsig_keys.
var ErrUnknownTSIGKey = errors.New("no such tsig key")

// Parse reads a config from data, applies defaults to what data leaves
// out, and validates it. It touches nothing outside data: files named in
// the config are checked by Load. file names data in problems and becomes
// the Config's Path, against whose directory relative file names resolve.
//
// Every problem found is returned, each with a line and column. The Config
// is returned even with problems, so a tool can show what was understood,
// but nothing may run from it then; it is nil only when data is not a YAML
// mapping at all.
func Parse(data []byte, file string) (*Config, Problems) {
	c, probs, _ := parse(data, file)
	return c, probs
}

func parse(data []byte, file string) (*Config, Problems, *decoder) {
	d := newDecoder(file, len(data))
	root, syntax := parseNode(data, file)
	if syntax != nil {
		return nil, Problems{*syntax}, d
	}
	if root.Kind != yaml.MappingNode {
		return nil, Problems{{File: file, Line: root.Line, Column: root.Column,
			Msg: "a config is a mapping of fields (deployment:, etcd:, sites:, ...), got " + describeNode(root)}}, d
	}
	c := Default()
	c.path = file
	d.value(root, nil, reflect.ValueOf(c).Elem(), "")
	probs := d.probs
	if d.budget <= 0 {
		// The walk stopped part way; validating half a config would only
		// bury the one problem that matters.
		sortProblems(probs)
		return c, probs, d
	}
	for _, p := range c.Validate() {
		if d.reported(p.Path) {
			continue
		}
		d.place(&p)
		probs = append(probs, p)
	}
	sortProblems(probs)
	return c, probs, d
}

// Load reads, parses and validates the config file at path, then checks
// the files it names: each must be readable, and secrets (TSIG secrets,
// the etcd client key and password) must not be readable by group or
// others. The error is Problems when the config is invalid, with every
// problem in the file; it wraps the read error when the file itself cannot
// be read.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	c, probs, d := parse(data, path)
	if c != nil && d.budget > 0 {
		// Absolute, so Resolve keeps working if the process changes
		// directory later.
		if abs, err := filepath.Abs(path); err == nil {
			c.path = abs
		}
		for _, p := range c.checkFiles() {
			if d.reported(p.Path) {
				continue
			}
			p.File = path
			d.place(&p)
			probs = append(probs, p)
		}
		sortProblems(probs)
	}
	if len(probs) > 0 {
		return nil, probs
	}
	return c, nil
}

// Path is the file the config was read from (absolute after Load, as
// given to Parse), or "" for a Config built in Go.
func (c *Config) Path() string { return c.path }

// Resolve turns a file name from the config into one the process can
// open: relative names are relative to the config file's directory, so a
// config and its secrets can move together. Empty stays empty.
func (c *Config) Resolve(p string) string {
	if p == "" || filepath.IsAbs(p) || c.path == "" {
		return p
	}
	return filepath.Join(filepath.Dir(c.path), p)
}

// Site returns the site called name. The pointer is into c.Sites.
func (c *Config) Site(name string) (*Site, bool) {
	for i := range c.Sites {
		if c.Sites[i].Name == name {
			return &c.Sites[i], true
		}
	}
	return nil, false
}

// DataSites returns the sites that hold a database and serve DNS, in
// config order: every site but the witness.
func (c *Config) DataSites() []Site {
	var out []Site
	for _, s := range c.Sites {
		if !s.Witness {
			out = append(out, s)
		}
	}
	return out
}

// TSIG returns the algorithm (as configured, e.g. "hmac-sha256") and the
// base64 secret of the tsig key called name, read from its secret file now
// (so a rotated secret is picked up without a restart). Key names compare
// as domain names: case and a final dot do not matter. The error never
// holds the secret.
func (c *Config) TSIG(name string) (algorithm, secretBase64 string, err error) {
	for _, k := range c.TSIGKeys {
		if tsigKeyID(k.Name) != tsigKeyID(name) {
			continue
		}
		secret, err := readSecret(c.Resolve(k.SecretFile))
		if err != nil {
			return "", "", fmt.Errorf("tsig key %q: %w", name, err)
		}
		return k.Algorithm, secret, nil
	}
	return "", "", fmt.Errorf("tsig key %q: %w", name, ErrUnknownTSIGKey)
}

// readSecret reads a base64 secret file, trimming surrounding whitespace.
func readSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read secret: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("secret file %s is empty", path)
	}
	if _, err := base64.StdEncoding.DecodeString(s); err != nil {
		// The decode error gives only an offset, never the content.
		return "", fmt.Errorf("secret file %s is not base64: %w", path, err)
	}
	return s, nil
}

// Marshal writes c as YAML that Parse reads back to an equal Config
// (given the same file name). Every field is written, defaults included,
// so a generated config says exactly what it runs with.
func (c *Config) Marshal() ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		return nil, fmt.Errorf("marshal config %s: %w", c.Deployment, err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("marshal config %s: %w", c.Deployment, err)
	}
	return b.Bytes(), nil
}

// checkFiles checks every file the config names. Problems carry paths but
// no positions; Load places them.
func (c *Config) checkFiles() Problems {
	v := &validator{file: c.path}
	type ref struct {
		path, name string
		secret     bool
	}
	var refs []ref
	for i, k := range c.TSIGKeys {
		refs = append(refs, ref{fmt.Sprintf("tsig_keys[%d].secret_file", i), k.SecretFile, true})
	}
	if t := c.Etcd.TLS; t != nil {
		refs = append(refs,
			ref{"etcd.tls.ca_file", t.CAFile, false},
			ref{"etcd.tls.cert_file", t.CertFile, false},
			ref{"etcd.tls.key_file", t.KeyFile, true})
	}
	refs = append(refs, ref{"etcd.password_file", c.Etcd.PasswordFile, true})
	for _, r := range refs {
		if r.name == "" {
			continue
		}
		p := c.Resolve(r.name)
		fi, err := os.Stat(p)
		if err != nil {
			v.add(r.path, "unreadable file %q: %v", p, pathErrReason(err))
			continue
		}
		if fi.IsDir() {
			v.add(r.path, "unreadable file %q: is a directory", p)
			continue
		}
		if r.secret && fi.Mode().Perm()&0o077 != 0 {
			v.add(r.path, "secret file %q has mode %#o: group and others must have no access (chmod 0600)", p, fi.Mode().Perm())
		}
		f, err := os.Open(p)
		if err != nil {
			v.add(r.path, "unreadable file %q: %v", p, pathErrReason(err))
			continue
		}
		f.Close()
		if strings.HasPrefix(r.path, "tsig_keys[") {
			if _, err := readSecret(p); err != nil {
				v.add(r.path, "%v", pathErrReason(err))
			}
		}
	}
	return v.probs
}

// pathErrReason drops the path from an *fs.PathError; the problem already
// names the file.
func pathErrReason(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) && err == error(pe) {
		return pe.Err
	}
	return err
}
