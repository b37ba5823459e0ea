//! The contacts a sync stored: paged by id, and one contact by either of a
//! person's ids, so the author of a message (`from`/`author`, as stored,
//! by `@lid` or by phone number) leads to its contact. Messages keep
//! their raw ids; the contact is resolved when read.

use super::*;
use crate::domain::StoredContact;

/// Longest contact id a request may name.
const MAX_CONTACT_ID: usize = 256;

/// A page of contacts, by id.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContactPage {
    pub contacts: Vec<StoredContact>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Stored contacts of a session, by contact id. Never starts a sync.
#[utoipa::path(get, path = "/whatsapp-web/session/{id}/contacts", tag = "data",
    params(("id" = String, Path, description = "session id"),
        ("limit" = Option<u32>, Query, description = "1–1000, default 50", minimum = 1, maximum = 1000),
        ("cursor" = Option<String>, Query, description = "nextCursor of the previous page", min_length = 1, max_length = 256)),
    responses((status = 200, body = ContactPage), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 404, body = Problem), (status = 503, body = Problem)))]
pub(in crate::gateway) async fn list_contacts(
    gw: &Gateway,
    id: SessionId,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let (limit, cursor) = super::data::id_page_query(req.uri(), MAX_CONTACT_ID)?;
    gw.sessions.snapshot(&id).await?;
    let contacts = gw
        .store
        .list_contacts(&id, limit, cursor.as_deref())
        .await?;
    let next_cursor = (contacts.len() as u32 == limit)
        .then(|| contacts.last().map(|c| c.contact.id.clone()))
        .flatten();
    Ok(json(
        StatusCode::OK,
        &ContactPage {
            contacts,
            next_cursor,
        },
    ))
}

/// One stored contact, by its id or its `@lid`: a message's `from` or
/// `author` either way finds the person.
#[utoipa::path(get, path = "/whatsapp-web/session/{id}/contacts/{contactId}", tag = "data",
    params(("id" = String, Path, description = "session id"),
        ("contactId" = String, Path, description = "4915112345678@c.us or 123456789012345@lid (percent-encode it)", min_length = 1, max_length = 256)),
    responses((status = 200, body = StoredContact), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 404, body = Problem, description = "no such session (`not_found`) or no such contact (`contact_not_found`)"),
        (status = 503, body = Problem)))]
pub(in crate::gateway) async fn get_contact(
    gw: &Gateway,
    id: SessionId,
    contact_id: String,
) -> Result<Response<Body>, ApiError> {
    if contact_id.is_empty() || contact_id.len() > MAX_CONTACT_ID {
        return Err(ApiError::bad_request(
            "invalid_contact_id",
            "contact id must be 1 to 256 characters",
        ));
    }
    gw.sessions.snapshot(&id).await?;
    match gw.store.find_contact(&id, &contact_id).await? {
        Some(c) => Ok(json(StatusCode::OK, &c)),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "contact_not_found",
            format!("no contact {contact_id} in session {id}"),
        )
        .with("contactId", contact_id)),
    }
}
