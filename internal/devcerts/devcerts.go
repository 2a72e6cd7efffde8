// Package devcerts creates a local development certificate authority and a
// server certificate signed by it, for trying fhirgate over HTTPS
// (`fhirgate certs dev --out DIR`). The CA is name-constrained to the hosts it
// was made for, so trusting it cannot let its key vouch for any other site.
// It is not meant for production.
package devcerts

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// File names written into the output directory.
const (
	CAFile        = "ca.pem"
	CAKeyFile     = "ca-key.pem"
	ServerFile    = "server.pem"
	ServerKeyFile = "server-key.pem"
)

// Validity periods. The server certificate stays under the 398 days browsers
// accept; the CA outlives a few server certificates.
const (
	CAValidity     = 3 * 365 * 24 * time.Hour
	ServerValidity = 397 * 24 * time.Hour
	// backdate tolerates small clock differences between machines.
	backdate = time.Hour
)

// ErrExists is returned when an output file already exists and Overwrite is
// not set.
var ErrExists = errors.New("devcerts: output file already exists")

// ErrBadHost is returned for a host that is neither an IP address nor a DNS name.
var ErrBadHost = errors.New("devcerts: invalid host")

// DefaultHosts returns the hosts used when none are given.
func DefaultHosts() []string { return []string{"localhost", "127.0.0.1", "::1"} }

// Files are the paths of the generated files.
type Files struct {
	CA       string // CA certificate (PEM); give this to clients to trust
	CAKey    string // CA private key (PKCS #8 PEM, mode 0600)
	Cert     string // server certificate (PEM)
	Key      string // server private key (PKCS #8 PEM, mode 0600)
	NotAfter time.Time
	Hosts    []string
	CASHA256 string // hex SHA-256 fingerprint of the CA certificate
}

// Options controls GenerateWith.
type Options struct {
	Hosts     []string  // DNS names and IP addresses; DefaultHosts when empty
	Now       time.Time // the clock; time.Now when zero
	Overwrite bool      // replace existing files instead of refusing
}

// Generate writes a development CA and a server certificate for hosts into
// dir (created with mode 0700 if missing). Keys are ECDSA P-256 and written
// with mode 0600. It refuses with ErrExists if any of the files exists.
func Generate(dir string, hosts []string, now time.Time) (Files, error) {
	return GenerateWith(dir, Options{Hosts: hosts, Now: now})
}

// GenerateWith is Generate with options, including Overwrite.
func GenerateWith(dir string, o Options) (Files, error) {
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	dns, ips, err := splitHosts(o.Hosts)
	if err != nil {
		return Files{}, err
	}
	f := Files{
		CA:    filepath.Join(dir, CAFile),
		CAKey: filepath.Join(dir, CAKeyFile),
		Cert:  filepath.Join(dir, ServerFile),
		Key:   filepath.Join(dir, ServerKeyFile),
	}
	f.Hosts = append(f.Hosts, dns...)
	for _, ip := range ips {
		f.Hosts = append(f.Hosts, ip.String())
	}
	if !o.Overwrite {
		for _, p := range []string{f.CA, f.CAKey, f.Cert, f.Key} {
			if _, err := os.Lstat(p); err == nil {
				return Files{}, fmt.Errorf("%w: %s", ErrExists, p)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return Files{}, fmt.Errorf("devcerts: %w", err)
			}
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Files{}, fmt.Errorf("devcerts: create %s: %w", dir, err)
	}

	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Files{}, fmt.Errorf("devcerts: generate CA key: %w", err)
	}
	caTmpl, err := caTemplate(now, dns, ips, &caKey.PublicKey)
	if err != nil {
		return Files{}, err
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return Files{}, fmt.Errorf("devcerts: sign CA certificate: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return Files{}, fmt.Errorf("devcerts: parse CA certificate: %w", err)
	}

	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Files{}, fmt.Errorf("devcerts: generate server key: %w", err)
	}
	srvTmpl, err := serverTemplate(now, dns, ips, caCert, &srvKey.PublicKey)
	if err != nil {
		return Files{}, err
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		return Files{}, fmt.Errorf("devcerts: sign server certificate: %w", err)
	}
	f.NotAfter = srvTmpl.NotAfter
	sum := sha256.Sum256(caDER)
	f.CASHA256 = fmt.Sprintf("%x", sum)

	caKeyPEM, err := keyPEM(caKey)
	if err != nil {
		return Files{}, err
	}
	srvKeyPEM, err := keyPEM(srvKey)
	if err != nil {
		return Files{}, err
	}
	writes := []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{f.CAKey, caKeyPEM, 0o600},
		{f.Key, srvKeyPEM, 0o600},
		{f.CA, certPEM(caDER), 0o644},
		{f.Cert, certPEM(srvDER), 0o644},
	}
	for _, w := range writes {
		if err := writeFile(w.path, w.data, w.mode, o.Overwrite); err != nil {
			return Files{}, err
		}
	}
	return f, nil
}

// splitHosts separates and validates hosts, removing duplicates.
func splitHosts(hosts []string) ([]string, []netip.Addr, error) {
	if len(hosts) == 0 {
		hosts = DefaultHosts()
	}
	var dns []string
	var ips []netip.Addr
	seen := map[string]bool{}
	for _, h := range hosts {
		h = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(h)), ".")
		if h == "" {
			return nil, nil, fmt.Errorf("%w: empty host", ErrBadHost)
		}
		if ip, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil {
			if ip.Zone() != "" {
				return nil, nil, fmt.Errorf("%w: %q has a zone", ErrBadHost, h)
			}
			ip = ip.Unmap()
			if !seen[ip.String()] {
				seen[ip.String()] = true
				ips = append(ips, ip)
			}
			continue
		}
		if !validDNSName(h) {
			return nil, nil, fmt.Errorf("%w: %q is not an IP address or DNS name (wildcards are not supported)", ErrBadHost, h)
		}
		if !seen[h] {
			seen[h] = true
			dns = append(dns, h)
		}
	}
	return dns, ips, nil
}

// validDNSName accepts LDH labels of 1–63 characters, at most 253 in total.
func validDNSName(h string) bool {
	if len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

func serial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("devcerts: serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

func keyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("devcerts: marshal public key: %w", err)
	}
	sum := sha256.Sum256(der)
	return sum[:20], nil
}

// caTemplate builds a CA that may sign only leaf certificates for the given
// hosts: path length 0, and name constraints marked critical. When no DNS
// name (or no IP) is requested, the constraint permits only a reserved name
// (or address) so that the CA cannot issue for any other.
func caTemplate(now time.Time, dns []string, ips []netip.Addr, pub crypto.PublicKey) (*x509.Certificate, error) {
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	ski, err := keyID(pub)
	if err != nil {
		return nil, err
	}
	permittedDNS := dns
	if len(permittedDNS) == 0 {
		permittedDNS = []string{"invalid"} // RFC 6761 reserved: matches nothing real
	}
	var permittedIPs []*net.IPNet
	for _, ip := range ips {
		permittedIPs = append(permittedIPs, hostNet(ip))
	}
	if len(permittedIPs) == 0 {
		permittedIPs = []*net.IPNet{{IP: net.IPv4(255, 255, 255, 255).To4(), Mask: net.CIDRMask(32, 32)}}
	}
	return &x509.Certificate{
		SerialNumber: sn,
		Subject: pkix.Name{
			Organization: []string{"fhirgate development"},
			CommonName:   "fhirgate development CA " + now.UTC().Format("2006-01-02T15:04:05Z"),
		},
		NotBefore:                   now.Add(-backdate),
		NotAfter:                    now.Add(CAValidity),
		KeyUsage:                    x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid:       true,
		IsCA:                        true,
		MaxPathLen:                  0,
		MaxPathLenZero:              true,
		SubjectKeyId:                ski,
		PermittedDNSDomainsCritical: true,
		PermittedDNSDomains:         permittedDNS,
		PermittedIPRanges:           permittedIPs,
	}, nil
}

func hostNet(ip netip.Addr) *net.IPNet {
	if ip.Is4() {
		b := ip.As4()
		return &net.IPNet{IP: net.IP(b[:]), Mask: net.CIDRMask(32, 32)}
	}
	b := ip.As16()
	return &net.IPNet{IP: net.IP(b[:]), Mask: net.CIDRMask(128, 128)}
}

func serverTemplate(now time.Time, dns []string, ips []netip.Addr, ca *x509.Certificate, pub crypto.PublicKey) (*x509.Certificate, error) {
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	ski, err := keyID(pub)
	if err != nil {
		return nil, err
	}
	cn := ""
	if len(dns) > 0 {
		cn = dns[0]
	} else if len(ips) > 0 {
		cn = ips[0].String()
	}
	t := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{Organization: []string{"fhirgate development"}, CommonName: cn},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(ServerValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		SubjectKeyId:          ski,
		AuthorityKeyId:        ca.SubjectKeyId,
		DNSNames:              dns,
	}
	for _, ip := range ips {
		b := ip.AsSlice()
		t.IPAddresses = append(t.IPAddresses, net.IP(b))
	}
	if t.NotAfter.After(ca.NotAfter) {
		t.NotAfter = ca.NotAfter
	}
	return t, nil
}

func keyPEM(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("devcerts: marshal private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func certPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// writeFile writes data with mode. Without overwrite it creates the file
// exclusively, so a file appearing meanwhile is never replaced. With
// overwrite it writes a temporary file and renames it into place, so a key
// file never exists with looser permissions, even briefly.
func writeFile(path string, data []byte, mode os.FileMode, overwrite bool) error {
	if !overwrite {
		fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
		if err != nil {
			if errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("%w: %s", ErrExists, path)
			}
			return fmt.Errorf("devcerts: %w", err)
		}
		if _, err := fh.Write(data); err != nil {
			_ = fh.Close()
			return fmt.Errorf("devcerts: write %s: %w", path, err)
		}
		if err := fh.Close(); err != nil {
			return fmt.Errorf("devcerts: write %s: %w", path, err)
		}
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("devcerts: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if err := tmp.Chmod(mode); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("devcerts: chmod %s: %w", tmp.Name(), err)
	}
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("devcerts: write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("devcerts: write %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("devcerts: %w", err)
	}
	return nil
}
