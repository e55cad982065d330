//! Issue 11.1, on in-memory ports: a POST form stays valid for minutes and can be sent
//! again. Whatever is written to a key after (or while) its upload completes, only the
//! exact version that was scanned is ever tagged, read by processing or served.

use api_types::files::LinkRequest;

use crate::domain::{links::LinkQuery, ContentType, FileName, Owner, UploadId, UploadStatus};
use crate::processing::{self, JobOutcome};
use crate::testing::{Fakes, EICAR_MARKER};

use super::{
    arrival::{object_arrived, Arrival},
    create::{open_session, Session},
    download::download,
    links::create_link,
};

const T0: i64 = 1_800_000_000;

/// A single-POST session (what `GET /s3/params` opens).
async fn single_post(f: &Fakes, who: &Owner) -> (UploadId, String) {
    let session = Session {
        filename: FileName::parse("notes.txt").unwrap(),
        content_type: ContentType::parse("text/plain").unwrap(),
        plan: None,
        part_checksums: false,
        sha256: None,
        single_post: true,
    };
    let u = open_session(&f.app, who, session, T0).await.unwrap();
    (u.id.clone(), u.s3_key)
}

/// Runs the processing job the completion queued.
async fn process_last_job(f: &Fakes) -> JobOutcome {
    let job = f.jobs.sent().last().cloned().expect("a job was queued");
    processing::process(&f.processor(), &job, 1).await.unwrap()
}

/// Where a fresh share link of the file redirects to.
async fn served_url(f: &Fakes, who: &Owner, id: &UploadId) -> String {
    let link = create_link(&f.app, who, id, LinkRequest::default(), "", T0).await.unwrap();
    let query = link.url.split_once('?').unwrap().1.to_owned();
    let get = |name: &str| query.split('&').find_map(|kv| kv.strip_prefix(&format!("{name}=")[..]));
    let q = LinkQuery { v: get("v"), e: get("e"), d: get("d"), g: get("g"), k: get("k"), s: get("s") };
    download(&f.app, id.as_str(), &q, T0).await.unwrap().location
}

fn eicar() -> Vec<u8> {
    let mut v = b"clean text, then: ".to_vec();
    v.extend_from_slice(EICAR_MARKER);
    v
}

#[tokio::test]
async fn a_form_sent_again_after_the_verdict_is_thrown_away_and_the_scanned_version_is_served() {
    let f = Fakes::new();
    let who = Owner::parse("ann").unwrap();
    let (id, key) = single_post(&f, &who).await;
    let clean = f.objects.put_object(&key, b"hello, clean world");
    let clean_version = clean.version.clone().unwrap();
    assert_eq!(object_arrived(&f.app, &key, clean.version.as_deref(), T0).await.unwrap(), Arrival::Completed);
    assert_eq!(process_last_job(&f).await, JobOutcome::Finished(UploadStatus::Ready));
    assert_eq!(f.repo.upload(&id).unwrap().version_id.as_deref(), Some(clean_version.as_str()));

    // The same form, the EICAR string. S3 accepts it: a new version at the same key.
    let bad = f.objects.put_object(&key, &eicar());
    assert_eq!(f.objects.versions(&key), 2);
    // Until its event is handled, downloads still name the scanned version...
    assert!(served_url(&f, &who, &id).await.ends_with(&format!("?versionId={clean_version}")));
    assert_eq!(f.objects.status_tag_of(&key, bad.version.as_deref()), None, "the new version is untagged");
    // ...and then it is gone, counted on the upload; the verdict stands.
    assert_eq!(object_arrived(&f.app, &key, bad.version.as_deref(), T0 + 5).await.unwrap(), Arrival::Refused);
    assert_eq!(f.objects.versions(&key), 1);
    assert_eq!(&f.objects.object(&key).unwrap()[..], b"hello, clean world");
    let u = f.repo.upload(&id).unwrap();
    assert_eq!((u.status, u.refused_writes), (UploadStatus::Ready, Some(1)));
    assert_eq!(f.objects.status_tag_of(&key, Some(&clean_version)).as_deref(), Some("ready"));
    // A repeated event of either version changes nothing more.
    assert_eq!(object_arrived(&f.app, &key, Some(&clean_version), T0 + 6).await.unwrap(), Arrival::Ignored);
    assert_eq!(object_arrived(&f.app, &key, bad.version.as_deref(), T0 + 6).await.unwrap(), Arrival::Refused);
    assert_eq!(f.objects.versions(&key), 1);
}

#[tokio::test]
async fn a_write_while_the_scan_runs_never_reaches_the_scanner_or_the_reader() {
    let f = Fakes::new();
    let who = Owner::parse("bo").unwrap();
    let (id, key) = single_post(&f, &who).await;
    let clean = f.objects.put_object(&key, b"first and only scanned bytes");
    assert_eq!(object_arrived(&f.app, &key, clean.version.as_deref(), T0).await.unwrap(), Arrival::Completed);
    // Written after completion, before the job runs (its event still queued).
    let bad = f.objects.put_object(&key, &eicar());
    // Processing reads the recorded version: clean, ready, tagged on that version only.
    assert_eq!(process_last_job(&f).await, JobOutcome::Finished(UploadStatus::Ready));
    assert_eq!(f.objects.status_tag_of(&key, clean.version.as_deref()).as_deref(), Some("ready"));
    assert_eq!(f.objects.status_tag_of(&key, bad.version.as_deref()), None);
    assert!(served_url(&f, &who, &id).await.ends_with(&format!("?versionId={}", clean.version.unwrap())));
    assert_eq!(object_arrived(&f.app, &key, bad.version.as_deref(), T0 + 1).await.unwrap(), Arrival::Refused);
    assert_eq!(f.objects.versions(&key), 1);
}

#[tokio::test]
async fn two_posts_before_either_event_pin_exactly_one_and_refuse_the_other() {
    for first_event in [0, 1] {
        let f = Fakes::new();
        let who = Owner::parse("cy").unwrap();
        let (id, key) = single_post(&f, &who).await;
        let a = f.objects.put_object(&key, b"version a");
        let b = f.objects.put_object(&key, &eicar());
        let events = if first_event == 0 { [&a, &b] } else { [&b, &a] };
        assert_eq!(object_arrived(&f.app, &key, events[0].version.as_deref(), T0).await.unwrap(), Arrival::Completed);
        assert_eq!(object_arrived(&f.app, &key, events[1].version.as_deref(), T0).await.unwrap(), Arrival::Refused);
        let u = f.repo.upload(&id).unwrap();
        assert_eq!(u.version_id, events[0].version, "the version the completing event named");
        assert_eq!(f.objects.versions(&key), 1);
        // Whichever was pinned is what gets the verdict.
        let expected = if first_event == 0 { UploadStatus::Ready } else { UploadStatus::Quarantined };
        assert_eq!(process_last_job(&f).await, JobOutcome::Finished(expected));
    }
}

/// Issue 11.7: a link made before a delete stays dead after the restore; a new one works.
#[tokio::test]
async fn a_link_made_before_a_delete_is_dead_after_the_restore() {
    let f = Fakes::new();
    let who = Owner::parse("di").unwrap();
    let (id, key) = single_post(&f, &who).await;
    let clean = f.objects.put_object(&key, b"kept");
    object_arrived(&f.app, &key, clean.version.as_deref(), T0).await.unwrap();
    process_last_job(&f).await;
    let old = create_link(&f.app, &who, &id, LinkRequest::default(), "", T0).await.unwrap().url;
    super::catalog::delete(&f.app, &who, &id, "", T0).await.unwrap();
    super::catalog::restore(&f.app, &who, &id, "", T0).await.unwrap();
    let query = old.split_once('?').unwrap().1.to_owned();
    let get = |name: &str| query.split('&').find_map(|kv| kv.strip_prefix(&format!("{name}=")[..]));
    let q = LinkQuery { v: get("v"), e: get("e"), d: get("d"), g: get("g"), k: get("k"), s: get("s") };
    match download(&f.app, id.as_str(), &q, T0).await {
        Err(crate::domain::UploadError::Gone(why)) => assert!(why.contains("revoked"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert!(served_url(&f, &who, &id).await.contains("versionId="), "a new link works");
}

/// A later write whose S3 event is lost (or still queued) is deleted at the verdict.
#[tokio::test]
async fn a_write_whose_event_is_lost_is_deleted_at_the_verdict() {
    let f = Fakes::new();
    let who = Owner::parse("ed").unwrap();
    let (id, key) = single_post(&f, &who).await;
    let clean = f.objects.put_object(&key, b"first");
    object_arrived(&f.app, &key, clean.version.as_deref(), T0).await.unwrap();
    f.objects.put_object(&key, &eicar()); // its event never comes
    assert_eq!(process_last_job(&f).await, JobOutcome::Finished(UploadStatus::Ready));
    assert_eq!(f.objects.versions(&key), 1);
    assert_eq!(&f.objects.object(&key).unwrap()[..], b"first");
    assert_eq!(f.repo.upload(&id).unwrap().refused_writes, Some(1));
}
