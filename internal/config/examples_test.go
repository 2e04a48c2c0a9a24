package config

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const examplesDir = "../../deploy/examples"

// TestExamples: every example config an operator might copy is valid.
// They name secret files under /etc/regdr that exist only on a real
// machine, so this is Parse (with Validate), not Load.
func TestExamples(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(examplesDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no example configs in %s: %v", examplesDir, err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			c, probs := Parse(data, file)
			if len(probs) > 0 {
				t.Fatalf("example has problems:\n%v", probs)
			}
			for _, f := range secretFiles(c) {
				if !strings.HasPrefix(f, "/etc/regdr/") {
					t.Errorf("secret file %s is not under /etc/regdr/", f)
				}
			}
		})
	}
}

func secretFiles(c *Config) []string {
	var out []string
	for _, k := range c.TSIGKeys {
		out = append(out, k.SecretFile)
	}
	if c.Etcd.TLS != nil {
		out = append(out, c.Etcd.TLS.KeyFile)
	}
	if c.Etcd.PasswordFile != "" {
		out = append(out, c.Etcd.PasswordFile)
	}
	return out
}

// TestExampleDeployment pins what the brief for the example promises: three
// sites with a witness, three etcd members over TLS, two secondaries, two
// operators.
func TestExampleDeployment(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(examplesDir, "deployment.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	c, probs := Parse(data, "deployment.yaml")
	if len(probs) > 0 {
		t.Fatal(probs)
	}
	var names []string
	for _, s := range c.Sites {
		names = append(names, s.Name)
	}
	checks := []struct {
		name string
		ok   bool
	}{
		{"sites tokyo, osaka, witness", strings.Join(names, ",") == "tokyo,osaka,witness" && c.Sites[2].Witness},
		{"three etcd members", len(c.Etcd.Endpoints) == 3},
		{"etcd over TLS", c.Etcd.TLS != nil && strings.HasPrefix(c.Etcd.Endpoints[0], "https://")},
		{"zone example.", len(c.Zones) > 0 && c.Zones[0].Origin == "example."},
		{"two secondaries", len(c.Secondary) == 2},
		{"two operators", len(c.Operators) == 2},
	}
	for _, ck := range checks {
		if !ck.ok {
			t.Errorf("example deployment: want %s", ck.name)
		}
	}
}

// TestAgentEnv: each site's EnvironmentFile names the example config and a
// site that config defines, and the unit passes both to the agent.
func TestAgentEnv(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(examplesDir, "deployment.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	c, probs := Parse(data, "deployment.yaml")
	if len(probs) > 0 {
		t.Fatal(probs)
	}
	envs, err := filepath.Glob(filepath.Join(examplesDir, "*", "agent.env"))
	if err != nil || len(envs) != len(c.Sites) {
		t.Fatalf("agent.env files %v, want one per site (%d): %v", envs, len(c.Sites), err)
	}
	for _, file := range envs {
		env := readEnv(t, file)
		dirSite := filepath.Base(filepath.Dir(file))
		if env["REGDR_SITE"] != dirSite {
			t.Errorf("%s: REGDR_SITE=%q, want %q", file, env["REGDR_SITE"], dirSite)
		}
		if _, ok := c.Site(env["REGDR_SITE"]); !ok {
			t.Errorf("%s: site %q not in deployment.yaml", file, env["REGDR_SITE"])
		}
		if env["REGDR_CONFIG"] != "/etc/regdr/deployment.yaml" {
			t.Errorf("%s: REGDR_CONFIG=%q", file, env["REGDR_CONFIG"])
		}
	}
	unit, err := os.ReadFile("../../deploy/systemd/regdr-agent.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"EnvironmentFile=/etc/regdr/agent.env",
		"ExecStart=/usr/local/bin/regdr agent --config ${REGDR_CONFIG} --site ${REGDR_SITE}",
		"NoNewPrivileges=yes",
		"ProtectSystem=strict",
	} {
		if !strings.Contains(string(unit), want+"\n") {
			t.Errorf("regdr-agent.service lacks %q", want)
		}
	}
}

func readEnv(t *testing.T, file string) map[string]string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Errorf("%s: bad line %q", file, line)
			continue
		}
		env[k] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return env
}
