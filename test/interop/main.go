// Command interop checks Airlock's X.509-SVIDs with go-spiffe: it verifies an issued SVID against
// the trust bundle with x509svid, then calls a sidecar's inbound port as a go-spiffe mTLS client
// that authorizes exactly the expected server SPIFFE ID. Inputs come from the environment.
// `interop csr` instead prints a new ECDSA P-256 key and its CSR, made by Go's crypto as go-spiffe
// and SPIRE make them, for the control plane to sign.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "csr" {
		newKeyAndCSR()
		return
	}
	td, err := spiffeid.TrustDomainFromString(os.Getenv("INTEROP_TRUST_DOMAIN"))
	if err != nil {
		fail("trust domain: %v", err)
	}
	bundle, err := x509bundle.Load(td, os.Getenv("INTEROP_BUNDLE"))
	if err != nil {
		fail("bundle: %v", err)
	}
	svid, err := x509svid.Load(os.Getenv("INTEROP_CERT"), os.Getenv("INTEROP_KEY"))
	if err != nil {
		fail("svid: %v", err)
	}
	id, _, err := x509svid.Verify(svid.Certificates, bundle)
	if err != nil {
		fail("x509svid.Verify: %v", err)
	}
	fmt.Printf("verified %s key %s\n", id, keyOf(svid.Certificates[0]))

	serverID, err := spiffeid.FromString(os.Getenv("INTEROP_SERVER_ID"))
	if err != nil {
		fail("server id: %v", err)
	}
	tlsConf := tlsconfig.MTLSClientConfig(svid, bundle, tlsconfig.AuthorizeID(serverID))
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConf}, Timeout: 10 * time.Second}
	ctx := context.Background()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+os.Getenv("INTEROP_ADDRESS")+"/v1/interop", nil)
	if err != nil {
		fail("request: %v", err)
	}
	req.Host = os.Getenv("INTEROP_HOST")
	res, err := client.Do(req)
	if err != nil {
		fail("mTLS call: %v", err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	peer := res.TLS.PeerCertificates[0]
	fmt.Printf("status %d peer %s key %s\n%s\n", res.StatusCode, uriOf(peer), keyOf(peer), body)
}

func newKeyAndCSR() {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		fail("key: %v", err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "gopher"}}, key)
	if err != nil {
		fail("csr: %v", err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		fail("key: %v", err)
	}
	_ = pem.Encode(os.Stdout, &pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})
	_ = pem.Encode(os.Stdout, &pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func keyOf(cert *x509.Certificate) string {
	switch k := cert.PublicKey.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	default:
		return cert.PublicKeyAlgorithm.String()
	}
}

func uriOf(cert *x509.Certificate) string {
	if len(cert.URIs) != 1 {
		return ""
	}
	return cert.URIs[0].String()
}
