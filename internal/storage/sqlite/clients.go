package sqlite

import (
	"context"
	"database/sql"

	"github.com/fhirgate/fhirgate/internal/storage"
)

const clientCols = `id, name, secret_hash, auth_method, redirect_uris, scope, grant_types, launch_uri,
	logo_uri, id_token_signed_response_alg, jwks, jwks_uri, registration_token_hash, disabled,
	created_at, updated_at, dpop_bound_access_tokens, require_par, tls_client_auth_subject_dn`

func scanClient(sc scanner) (*storage.Client, error) {
	var c storage.Client
	if err := sc.Scan(&c.ID, &c.Name, bs(&c.SecretHash), &c.AuthMethod, js(&c.RedirectURIs),
		&c.Scope, js(&c.GrantTypes), &c.LaunchURI, &c.LogoURI, &c.IDTokenSignedResponseAlg,
		bs(&c.JWKS), &c.JWKSURI, bs(&c.RegistrationTokenHash), &c.Disabled,
		ts(&c.CreatedAt), ts(&c.UpdatedAt), &c.DPoPBoundAccessTokens, &c.RequirePAR,
		&c.TLSClientAuthSubjectDN); err != nil {
		return nil, err
	}
	return &c, nil
}

func clientArgs(c *storage.Client) ([]any, error) {
	ru, err := jsonText(c.RedirectURIs)
	if err != nil {
		return nil, err
	}
	gt, err := jsonText(c.GrantTypes)
	if err != nil {
		return nil, err
	}
	return []any{c.ID, c.Name, blob(c.SecretHash), c.AuthMethod, ru, c.Scope, gt, c.LaunchURI,
		c.LogoURI, c.IDTokenSignedResponseAlg, blob(c.JWKS), c.JWKSURI, blob(c.RegistrationTokenHash),
		c.Disabled, micros(c.CreatedAt), micros(c.UpdatedAt), c.DPoPBoundAccessTokens, c.RequirePAR,
		c.TLSClientAuthSubjectDN}, nil
}

// CreateClient inserts c; ErrConflict if its id is taken.
func (s *Store) CreateClient(ctx context.Context, c *storage.Client) error {
	args, err := clientArgs(c)
	if err != nil {
		return wrap("create client", err)
	}
	_, err = s.wexec(ctx, nil, `INSERT INTO clients (`+clientCols+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, args...)
	return wrap("create client", err)
}

// GetClient returns the client with that id.
func (s *Store) GetClient(ctx context.Context, id string) (*storage.Client, error) {
	c, err := scanClient(s.rrow(ctx, `SELECT `+clientCols+` FROM clients WHERE id = ?`, id))
	return c, wrap("get client", err)
}

// ListClients returns every client ordered by creation time, then id.
func (s *Store) ListClients(ctx context.Context) ([]storage.Client, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+clientCols+` FROM clients ORDER BY created_at, id`)
	if err != nil {
		return nil, wrap("list clients", err)
	}
	defer rows.Close()
	var out []storage.Client
	for rows.Next() {
		c, err := scanClient(rows)
		if err != nil {
			return nil, wrap("list clients", err)
		}
		out = append(out, *c)
	}
	return out, wrap("list clients", rows.Err())
}

// UpdateClient reads the client, applies update and writes it back in one
// write transaction. The id cannot change. An error from update aborts.
func (s *Store) UpdateClient(ctx context.Context, id string, update func(*storage.Client) error) (*storage.Client, error) {
	var out *storage.Client
	err := s.tx(ctx, "update client", func(tx *sql.Tx) error {
		c, err := scanClient(s.wrow(ctx, tx, `SELECT `+clientCols+` FROM clients WHERE id = ?`, id))
		if err != nil {
			return err
		}
		if err := update(c); err != nil {
			return err
		}
		c.ID = id
		args, err := clientArgs(c)
		if err != nil {
			return err
		}
		if err := execOne(s.wexec(ctx, tx, `UPDATE clients SET name = ?, secret_hash = ?, auth_method = ?,
			redirect_uris = ?, scope = ?, grant_types = ?, launch_uri = ?, logo_uri = ?,
			id_token_signed_response_alg = ?, jwks = ?, jwks_uri = ?, registration_token_hash = ?,
			disabled = ?, created_at = ?, updated_at = ?, dpop_bound_access_tokens = ?, require_par = ?,
			tls_client_auth_subject_dn = ? WHERE id = ?`, append(args[1:], id)...)); err != nil {
			return err
		}
		out = c
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteClient deletes the client; ErrNotFound if there is none.
func (s *Store) DeleteClient(ctx context.Context, id string) error {
	return wrap("delete client", execOne(s.wexec(ctx, nil, `DELETE FROM clients WHERE id = ?`, id)))
}
