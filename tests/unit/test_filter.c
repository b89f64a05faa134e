/* test_filter.c — Lambda event filtering (process/filter.h) against the
 * examples of the AWS documentation: each group below cites the page its
 * patterns, events and expected results come from.  EventBridge examples
 * are events of their own, so they are put in a record's payload and the
 * pattern under "data", which is how a Kinesis filter applies the same
 * rules.  Where a page states a rule in words only ("LastName is empty"),
 * the events on either side of it are made here and say so.
 *
 * Then what the pages leave open and kcld decides (filter.h), invalid
 * patterns and their error paths and positions, pattern trees built as
 * config.c builds them from YAML, and the document walk on larger payloads.
 * A last test prints records filtered per second (no timing assertion). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "err.h"
#include "process/filter.h"

#define SEQ "49590338271490256608559692538361571095921575989136588898"

/* One case: a pattern (JSON text: any form kcld_filter_add_text takes),
 * the payloads it keeps and those it drops (each list NULL-ended), and the
 * records' partition key (NULL: "1"). */
#define FCASE_MAX 4
struct fcase {
  const char *pattern;
  const char *keep[FCASE_MAX + 1];
  const char *drop[FCASE_MAX + 1];
  const char *pk;
};

static struct kcld_record record(const char *data, size_t len,
                                 const char *pk)
{
  struct kcld_record r;
  memset(&r, 0, sizeof(r));
  r.data = (const uint8_t *)data;
  r.data_len = len;
  r.partition_key = pk;
  r.partition_key_len = strlen(pk);
  r.sequence_number = SEQ;
  r.arrival_ms = 1545084650987;
  return r;
}

static struct kcld_filter *compile(const char *pattern)
{
  struct kcld_filter *f = kcld_filter_new();
  struct kcld_filter_error err;
  assert_non_null(f);
  if (kcld_filter_add_text(f, pattern, strlen(pattern), &err) != 0) {
    fprintf(stderr, "pattern refused: %s\n  at %d:%d %s: %s\n", pattern,
            err.line, err.col, err.path, err.msg);
    fail();
  }
  return f;
}

/* Compiles each case's pattern once and matches every payload of it;
 * reports each disagreement, then fails if there was one. */
static void run_cases(const struct fcase *c, size_t n)
{
  int bad = 0;
  for (size_t i = 0; i < n; i++) {
    struct kcld_filter *f = compile(c[i].pattern);
    const char *pk = c[i].pk ? c[i].pk : "1";
    for (int want = 1; want >= 0; want--) {
      const char *const *data = want ? c[i].keep : c[i].drop;
      for (size_t j = 0; data[j]; j++) {
        struct kcld_record r = record(data[j], strlen(data[j]), pk);
        int got = kcld_filter_match(f, &r);
        if (got != want) {
          fprintf(stderr, "case %zu: pattern %s\n  payload %s (key %s)\n"
                  "  kept %d, expected %d\n", i, c[i].pattern, data[j], pk,
                  got, want);
          bad++;
        }
      }
    }
    kcld_filter_free(f);
  }
  assert_int_equal(bad, 0);
}

#define RUN(cases) run_cases(cases, sizeof(cases) / sizeof(cases[0]))

/* An EventBridge pattern applied to an event carried as the payload. */
#define EB(p) "{\"data\": " p "}"

/* ======== The Lambda pages ======== */

/* https://docs.aws.amazon.com/lambda/latest/dg/invocation-eventfiltering.html
 * "Filter rule syntax": the table of comparison operators.  The table
 * gives a rule and its meaning; the payloads on either side are made here
 * from that meaning. */
static void test_lambda_operator_table(void **state)
{
  static const struct fcase cases[] = {
    /* Null: UserID is null */
    {EB("{\"UserID\": [null]}"),
     .keep = {"{\"UserID\": null}"},
     .drop = {"{\"UserID\": \"u1\"}",
              "{}"}},
    /* Empty: LastName is empty */
    {EB("{\"LastName\": [\"\"]}"),
     .keep = {"{\"LastName\": \"\"}"},
     .drop = {"{\"LastName\": \"Doe\"}"}},
    /* Equals: Name is "Alice" */
    {EB("{\"Name\": [\"Alice\"]}"),
     .keep = {"{\"Name\": \"Alice\"}"},
     .drop = {"{\"Name\": \"alice\"}"}},
    /* Equals (ignore case): Name is "Alice" */
    {EB("{\"Name\": [{\"equals-ignore-case\": \"alice\"}]}"),
     .keep = {"{\"Name\": \"Alice\"}"},
     .drop = {"{\"Name\": \"Alicia\"}"}},
    /* And: Location is "New York" and Day is "Monday" */
    {EB("{\"Location\": [\"New York\"], \"Day\": [\"Monday\"]}"),
     .keep = {"{\"Location\": \"New York\", \"Day\": \"Monday\"}"},
     .drop = {"{\"Location\": \"New York\", \"Day\": \"Tuesday\"}",
              "{\"Location\": \"New York\"}"}},
    /* Or: PaymentType is "Credit" or "Debit" */
    {EB("{\"PaymentType\": [\"Credit\", \"Debit\"]}"),
     .keep = {"{\"PaymentType\": \"Debit\"}"},
     .drop = {"{\"PaymentType\": \"Cash\"}"}},
    /* Not: Weather is anything but "Raining" */
    {EB("{\"Weather\": [{\"anything-but\": [\"Raining\"]}]}"),
     .keep = {"{\"Weather\": \"Sunny\"}"},
     .drop = {"{\"Weather\": \"Raining\"}"}},
    /* Numeric (equals): Price is 100 */
    {EB("{\"Price\": [{\"numeric\": [\"=\", 100]}]}"),
     .keep = {"{\"Price\": 100}"},
     .drop = {"{\"Price\": 101}"}},
    /* Numeric (range): more than 10, and less than or equal to 20 */
    {EB("{\"Price\": [{\"numeric\": [\">\", 10, \"<=\", 20]}]}"),
     .keep = {"{\"Price\": 20}"},
     .drop = {"{\"Price\": 10}",
              "{\"Price\": 20.5}"}},
    /* Exists: ProductName exists */
    {EB("{\"ProductName\": [{\"exists\": true}]}"),
     .keep = {"{\"ProductName\": \"Widget\"}"},
     .drop = {"{\"Price\": 1}"}},
    /* Does not exist: ProductName does not exist */
    {EB("{\"ProductName\": [{\"exists\": false}]}"),
     .keep = {"{\"Price\": 1}"},
     .drop = {"{\"ProductName\": \"Widget\"}"}},
    /* Begins with: Region is in the US */
    {EB("{\"Region\": [{\"prefix\": \"us-\"}]}"),
     .keep = {"{\"Region\": \"us-east-1\"}"},
     .drop = {"{\"Region\": \"eu-west-1\"}"}},
    /* Ends with: FileName ends with a .png extension */
    {EB("{\"FileName\": [{\"suffix\": \".png\"}]}"),
     .keep = {"{\"FileName\": \"photo.png\"}"},
     .drop = {"{\"FileName\": \"photo.jpg\"}"}},
  };
  (void)state;
  RUN(cases);
}

/* Same page, the note under the table: "Lambda uses exact character-by-
 * character matching without case-folding or any other string
 * normalization.  For numbers, Lambda also uses string representation.
 * For example, 300, 300.0, and 3.0e2 are not considered equal." */
static void test_lambda_exact_representation(void **state)
{
  static const struct fcase cases[] = {
    {EB("{\"n\": [300]}"),
     .keep = {"{\"n\": 300}"},
     .drop = {"{\"n\": 300.0}",
              "{\"n\": 3.0e2}"}},
    {EB("{\"n\": [300.0]}"), .drop = {"{\"n\": 3.0e2}"}},
    {EB("{\"n\": [3.0e2]}"), .keep = {"{\"n\": 3.0e2}"}},
    {EB("{\"n\": [300]}"), .drop = {"{\"n\": \"300\"}"}},
    {EB("{\"s\": [\"Seattle\"]}"),
     .drop = {"{\"s\": \"seattle\"}",
              "{\"s\": \"Seattle \"}"}},
  };
  (void)state;
  RUN(cases);
}

/* Same page, "Filtering examples" (the Kinesis partitionKey and Location
 * example, the Temperature range) and the console example { "a" : [ 1, 2 ]
 * }, and "Multi-level filtering" (its DynamoDB Keys.Id.N example, here on a
 * Kinesis payload of that shape). */
static void test_lambda_filtering_examples(void **state)
{
  static const char *la =
    "{\"Filters\": [{\"Pattern\": \"{ \\\"partitionKey\\\": [ \\\"1\\\" ], "
    "\\\"data\\\": { \\\"Location\\\": [ \\\"Los Angeles\\\" ] }}\"}]}";
  static const char *temp =
    "{\"Filters\": [{\"Pattern\": \"{ \\\"data\\\": { \\\"Temperature\\\": "
    "[ {\\\"numeric\\\": [ \\\">\\\", 50, \\\"<=\\\", 60 ] }]}}\"}]}";
  static const char *multi =
    "{\"data\": {\"Keys\": {\"Id\": {\"N\": [\"101\"]}}}}";
  static const char *item =
    "{\"Keys\": {\"Id\": {\"N\": \"101\"}}, \"NewImage\": {\"Message\": "
    "{\"S\": \"New item!\"}, \"Id\": {\"N\": \"101\"}}, \"SequenceNumber\": "
    "\"111\", \"SizeBytes\": 26, \"StreamViewType\": \"NEW_AND_OLD_IMAGES\"}";
  const struct fcase cases[] = {
    {la, .keep = {"{\"Location\": \"Los Angeles\"}"},
     .drop = {"{\"Location\": \"Seattle\"}"}},
    {la, .drop = {"{\"Location\": \"Los Angeles\"}"}, .pk = "2"},
    {temp, .keep = {"{\"Temperature\": 55}", "{\"Temperature\": 60}"},
     .drop = {"{\"Temperature\": 50}", "{\"Temperature\": \"55\"}"}},
    /* The console form: the pattern alone; field a equal to 1 or 2. */
    {EB("{ \"a\" : [ 1, 2 ] }"), .keep = {"{\"a\": 2}"},
     .drop = {"{\"a\": 3}"}},
    {multi, .keep = {item},
     .drop = {"{\"Keys\": {\"Id\": {\"N\": \"102\"}}}"}},
  };
  (void)state;
  RUN(cases);
}

/* Same page, "Duplicate keys": with duplicateKey twice, only the last
 * value ("world") is used. */
static void test_lambda_duplicate_keys(void **state)
{
  static const char *p =
    "{\"data\": {\"duplicateKey\": [\"hello\"], \"uniqueKey\": [\"test123\"],"
    " \"duplicateKey\": [\"world\"]}}";
  const struct fcase cases[] = {
    {p, .keep = {"{\"duplicateKey\": \"world\", \"uniqueKey\": \"test123\"}"},
     .drop = {"{\"duplicateKey\": \"hello\", \"uniqueKey\": \"test123\"}"}},
  };
  (void)state;
  RUN(cases);
}

/* Same page, "Properly filtering Kinesis and DynamoDB messages": the table
 * of payload format against pattern format.  Valid JSON / valid JSON:
 * filtered; JSON / no data pattern: metadata only; non-JSON / JSON pattern:
 * dropped; non-JSON / no data pattern: metadata only; a non-JSON pattern
 * for data: refused when the mapping is made (here: at load). */
static void test_lambda_stream_formats(void **state)
{
  static const char *on_data = "{\"data\": {\"a\": [{\"exists\": false}]}}";
  static const char *on_pk = "{\"partitionKey\": [\"1\"]}";
  /* Non-JSON payloads: a data pattern drops them, even one that would
   * match an absent field. */
  const struct fcase cases[] = {
    {on_data, .keep = {"{\"b\": 1}"},
     .drop = {"not json", "", "{\"b\": 1", "{\"b\": \"\xff\"}"}},
    {on_pk, .keep = {"{\"b\": 1}", "not json"}},
    {on_pk, .drop = {"{\"b\": 1}", "not json"}, .pk = "2"},
  };
  struct kcld_filter *f = kcld_filter_new();
  struct kcld_filter_error err;
  (void)state;

  RUN(cases);
  /* A data pattern that is not JSON structure. */
  assert_int_equal(kcld_filter_add_text(f, "{\"data\": [\"x\"]}", 15, &err),
                   KCLD_ECONFIG);
  assert_string_equal(err.path, "data");
  assert_non_null(strstr(err.msg, "mapping"));
  assert_int_equal(kcld_filter_add_text(f, "{\"data\": \"x\"}", 13, &err),
                   KCLD_ECONFIG);
  kcld_filter_free(f);
}

/* Same page: "By default, you can define up to five different filters ...
 * up to 10 filters for each event source"; filters are ORed; and the
 * FilterCriteria object {"Filters": [{"Pattern": "..."}]}. */
static void test_lambda_filter_count_and_or(void **state)
{
  struct kcld_filter *f = kcld_filter_new();
  struct kcld_filter_error err;
  struct kcld_record r;
  char p[64];
  (void)state;

  for (int i = 0; i < KCLD_FILTER_MAX_PATTERNS; i++) {
    snprintf(p, sizeof(p), "{\"partitionKey\": [\"k%d\"]}", i);
    assert_int_equal(kcld_filter_add_text(f, p, strlen(p), &err), 0);
  }
  assert_int_equal(kcld_filter_count(f), 10);
  assert_int_equal(kcld_filter_add_text(f, p, strlen(p), &err),
                   KCLD_ECONFIG);
  assert_non_null(strstr(err.msg, "10"));
  r = record("{}", 2, "k7");
  assert_int_equal(kcld_filter_match(f, &r), 1);
  r = record("{}", 2, "k10");
  assert_int_equal(kcld_filter_match(f, &r), 0);
  kcld_filter_free(f);

  /* Two filters of one FilterCriteria, either one keeps the record. */
  f = compile("{\"Filters\": [{\"Pattern\": \"{\\\"partitionKey\\\": "
              "[\\\"a\\\"]}\"}, {\"Pattern\": \"{\\\"data\\\": {\\\"x\\\": "
              "[1]}}\"}]}");
  assert_int_equal(kcld_filter_count(f), 2);
  r = record("{\"x\": 1}", 8, "b");
  assert_int_equal(kcld_filter_match(f, &r), 1);
  r = record("{\"x\": 2}", 8, "a");
  assert_int_equal(kcld_filter_match(f, &r), 1);
  r = record("{\"x\": 2}", 8, "b");
  assert_int_equal(kcld_filter_match(f, &r), 0);
  kcld_filter_free(f);
}

/* https://docs.aws.amazon.com/lambda/latest/dg/with-kinesis-filtering.html
 * "Kinesis event filtering basics": the example record (its data, base64,
 * is {"RecordNumber": "0001", "TimeStamp": "yyyy-mm-ddThh:mm:ss",
 * "RequestCode": "AAAA"}) and the order example: records where the order
 * type is "buy". */
static void test_kinesis_page(void **state)
{
  static const char *b64 =
    "eyJSZWNvcmROdW1iZXIiOiAiMDAwMSIsICJUaW1lU3RhbXAiOiAieXl5eS1tbS1kZFRo"
    "aDptbTpzcyIsICJSZXF1ZXN0Q29kZSI6ICJBQUFBIn0=";
  static const char *buy =
    "{\"Filters\": [{\"Pattern\": \"{ \\\"data\\\" : { \\\"order\\\" : { "
    "\\\"type\\\" : [ \\\"buy\\\" ] } } }\"}]}";
  const struct fcase orders[] = {
    {buy,
     .keep = {"{\"record\": 12345, \"order\": {\"type\": \"buy\", "
              "\"stock\": \"ANYCO\", \"quantity\": 1000}}"},
     .drop = {"{\"record\": 12346, \"order\": {\"type\": \"sell\", "
              "\"stock\": \"ANYCO\", \"quantity\": 1000}}"}},
  };
  unsigned char data[128];
  int n = EVP_DecodeBlock(data, (const unsigned char *)b64,
                          (int)strlen(b64));
  struct kcld_filter *f;
  struct kcld_record r;
  (void)state;

  assert_true(n > 2);
  while (n > 0 && data[n - 1] == '\0') /* base64 padding */
    n--;
  f = compile("{\"data\": {\"RequestCode\": [\"AAAA\"], \"RecordNumber\": "
              "[{\"prefix\": \"000\"}]}, \"partitionKey\": [\"1\"], "
              "\"sequenceNumber\": [{\"prefix\": \"4959033827\"}], "
              "\"approximateArrivalTimestamp\": [{\"numeric\": [\">=\", "
              "1545084650.987]}], \"kinesisSchemaVersion\": [\"1.0\"]}");
  r = record((const char *)data, (size_t)n, "1");
  assert_int_equal(kcld_filter_match(f, &r), 1);
  r.arrival_ms = 1545084650986;
  assert_int_equal(kcld_filter_match(f, &r), 0);
  kcld_filter_free(f);

  RUN(orders);
}

/* ======== The EventBridge pages ======== */

#define EC2_EVENT                                                           \
  "{\"version\": \"0\", \"id\": \"6a7e8feb-b491-4cf7-a9f1-bf3703467718\", " \
  "\"detail-type\": \"EC2 Instance State-change Notification\", "          \
  "\"source\": \"aws.ec2\", \"account\": \"111122223333\", \"time\": "     \
  "\"2017-12-22T18:43:48Z\", \"region\": \"us-west-1\", \"resources\": "   \
  "[\"arn:aws:ec2:us-west-1:123456789012:instance/i-1234567890abcdef0\"], " \
  "\"detail\": {\"instance-id\": \"i-1234567890abcdef0\", \"state\": "     \
  "\"terminated\"}}"

#define ASG_EVENT                                                           \
  "{\"version\": \"0\", \"id\": \"3e3c153a-8339-4e30-8c35-687ebef853fe\", " \
  "\"detail-type\": \"EC2 Instance Launch Successful\", \"source\": "      \
  "\"aws.autoscaling\", \"account\": \"123456789012\", \"time\": "         \
  "\"2015-11-11T21:31:47Z\", \"region\": \"us-east-1\", \"resources\": "   \
  "[], \"detail\": {\"eventVersion\": \"\", \"responseElements\": null}}"

/* https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-event-patterns.html
 * The EC2 instance-termination pattern, "Match values" (source aws.ec2 or
 * aws.fargate), "Field matching" (responseElements null) and "Value
 * matching" (the Macie finding with severity score 1 and count 2; the page
 * truncates the event, these are its fields shown). */
static void test_eb_event_patterns(void **state)
{
  static const struct fcase cases[] = {
    {EB("{\"source\": [\"aws.ec2\"], \"detail-type\": [\"EC2 Instance "
        "State-change Notification\"], \"detail\": {\"state\": "
        "[\"terminated\"]}}"),
     .keep = {EC2_EVENT}},
    {EB("{\"source\": [\"aws.ec2\"], \"detail-type\": [\"EC2 Instance "
        "State-change Notification\"], \"detail\": {\"state\": "
        "[\"running\"]}}"),
     .drop = {EC2_EVENT}},
    {EB("{\"source\": [\"aws.ec2\", \"aws.fargate\"]}"),
     .keep = {EC2_EVENT},
     .drop = {ASG_EVENT}},
    {EB("{\"source\": [\"aws.autoscaling\"], \"detail-type\": [\"EC2 "
        "Instance Launch Successful\"], \"detail\": {\"responseElements\": "
        "[null]}}"),
     .keep = {ASG_EVENT}},
    {EB("{\"source\": [\"aws.macie\"], \"detail-type\": [\"Macie "
        "Finding\"], \"detail\": {\"severity\": {\"score\": [1]}, "
        "\"count\": [2]}}"),
     .keep = {
      "{\"version\": \"0\", \"id\": \"0948ba87-d3b8-c6d4-f2da-732a1example\","
      " \"detail-type\": \"Macie Finding\", \"source\": \"aws.macie\", "
      "\"account\": \"123456789012\", \"time\": \"2021-04-29T23:12:15Z\", "
      "\"region\": \"us-east-1\", \"resources\": [], \"detail\": "
      "{\"schemaVersion\": \"1.0\", \"id\": \"64b917aa-3843-014c-91d8-"
      "937ffexample\", \"accountId\": \"123456789012\", \"partition\": "
      "\"aws\", \"region\": \"us-east-1\", \"type\": \"Policy:IAMUser/"
      "S3BucketEncryptionDisabled\", \"title\": \"Encryption is disabled for "
      "the S3 bucket\", \"severity\": {\"score\": 1, \"description\": "
      "\"Low\"}, \"createdAt\": \"2021-04-29T15:46:02Z\", \"updatedAt\": "
      "\"2021-04-29T23:12:15Z\", \"count\": 2}}"}},
  };
  (void)state;
  RUN(cases);
}

/* https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-event-patterns-null-values.html
 * eventVersion [""] and responseElements [null] both match the Auto
 * Scaling event; "Null values and empty strings are not interchangeable". */
static void test_eb_null_and_empty(void **state)
{
  static const struct fcase cases[] = {
    {EB("{\"detail\": {\"eventVersion\": [\"\"]}}"), .keep = {ASG_EVENT}},
    {EB("{\"detail\": {\"responseElements\": [null]}}"), .keep = {ASG_EVENT}},
    {EB("{\"detail\": {\"eventVersion\": [null]}}"), .drop = {ASG_EVENT}},
    {EB("{\"detail\": {\"responseElements\": [\"\"]}}"), .drop = {ASG_EVENT}},
  };
  (void)state;
  RUN(cases);
}

/* https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-event-patterns-arrays.html
 * A pattern array against an event array: a match when they intersect. */
static void test_eb_arrays(void **state)
{
  static const struct fcase cases[] = {
    {EB("{\"resources\": [\"arn:aws:ec2:us-east-1:123456789012:instance/"
        "i-b188560f\", \"arn:aws:ec2:us-east-1:111122223333:instance/"
        "i-b188560f\", \"arn:aws:ec2:us-east-1:444455556666:instance/"
        "i-b188560f\"]}"),
     .keep = {
      "{\"resources\": [\"arn:aws:autoscaling:us-east-1:123456789012:"
      "autoScalingGroup:eb56d16b-bbf0-401d-b893-d5978ed4a025:"
      "autoScalingGroupName/ASGTerminate\", \"arn:aws:ec2:us-east-1:"
      "123456789012:instance/i-b188560f\"]}"}},
    {EB("{\"resources\": [\"arn:aws:ec2:us-east-1:111122223333:instance/"
        "i-b188560f\"]}"),
     .drop = {
      "{\"resources\": [\"arn:aws:ec2:us-east-1:123456789012:instance/"
      "i-b188560f\"]}"}},
  };
  (void)state;
  RUN(cases);
}

/* https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-event-patterns-content-based-filtering.html
 * Prefix (and ignoring case: "EventB, but also EVENTB, eventb"), suffix
 * (and ignoring case), the anything-but forms, numeric, IP address. */
static void test_eb_content_filtering(void **state)
{
  static const struct fcase cases[] = {
    {EB("{\"time\": [{\"prefix\": \"2017-10-02\"}]}"),
     .keep = {"{\"time\": \"2017-10-02T18:43:48Z\"}"},
     .drop = {"{\"time\": \"2017-10-03T18:43:48Z\"}"}},
    {EB("{\"service\": [{\"prefix\": {\"equals-ignore-case\": "
        "\"EventB\"}}]}"),
     .keep = {"{\"service\": \"EventBridge\"}",
              "{\"service\": \"EVENTBRIDGE\"}",
              "{\"service\": \"eventb\"}"},
     .drop = {"{\"service\": \"Event\"}"}},
    {EB("{\"FileName\": [{\"suffix\": \".png\"}]}"),
     .keep = {"{\"FileName\": \"image.png\"}"},
     .drop = {"{\"FileName\": \"image.PNG\"}"}},
    {EB("{\"FileName\": [{\"suffix\": {\"equals-ignore-case\": \".png\"}}]}"),
     .keep = {"{\"FileName\": \"image.PNG\"}"}},
    /* anything-but: a string, a number, lists of each, a prefix. */
    {EB("{\"detail\": {\"state\": [{\"anything-but\": \"initializing\"}]}}"),
     .keep = {"{\"detail\": {\"state\": \"running\"}}"},
     .drop = {"{\"detail\": {\"state\": \"initializing\"}}"}},
    {EB("{\"detail\": {\"x-limit\": [{\"anything-but\": 123}]}}"),
     .keep = {"{\"detail\": {\"x-limit\": 124}}"},
     .drop = {"{\"detail\": {\"x-limit\": 123}}"}},
    {EB("{\"detail\": {\"state\": [{\"anything-but\": [\"stopped\", "
        "\"overloaded\"]}]}}"),
     .keep = {"{\"detail\": {\"state\": \"running\"}}"},
     .drop = {"{\"detail\": {\"state\": \"overloaded\"}}"}},
    {EB("{\"detail\": {\"x-limit\": [{\"anything-but\": [100, 200, "
        "300]}]}}"),
     .keep = {"{\"detail\": {\"x-limit\": 150}}"},
     .drop = {"{\"detail\": {\"x-limit\": 200}}"}},
    {EB("{\"detail\": {\"state\": [{\"anything-but\": {\"prefix\": "
        "\"init\"}}]}}"),
     .keep = {"{\"detail\": {\"state\": \"running\"}}"},
     .drop = {"{\"detail\": {\"state\": \"initializing\"}}"}},
    /* Numeric: only events true for all fields. */
    {EB("{\"detail\": {\"c-count\": [{\"numeric\": [\">\", 0, \"<=\", 5]}], "
        "\"d-count\": [{\"numeric\": [\"<\", 10]}], \"x-limit\": "
        "[{\"numeric\": [\"=\", 3.018e2]}]}}"),
     .keep = {"{\"detail\": {\"c-count\": 5, \"d-count\": 3, "
              "\"x-limit\": 301.8}}"},
     .drop = {"{\"detail\": {\"c-count\": 0, \"d-count\": 3, "
              "\"x-limit\": 301.8}}",
              "{\"detail\": {\"c-count\": 5, \"d-count\": 3, "
              "\"x-limit\": 301.9}}"}},
    /* IP addresses that start with 10.0.0 and end with 0 to 255. */
    {EB("{\"detail\": {\"sourceIPAddress\": [{\"cidr\": "
        "\"10.0.0.0/24\"}]}}"),
     .keep = {"{\"detail\": {\"sourceIPAddress\": \"10.0.0.0\"}}",
              "{\"detail\": {\"sourceIPAddress\": \"10.0.0.255\"}}"},
     .drop = {"{\"detail\": {\"sourceIPAddress\": \"10.0.1.0\"}}",
              "{\"detail\": {\"sourceIPAddress\": \"10.0.0.1x\"}}"}},
  };
  (void)state;
  RUN(cases);
}

/* Same page, "Exists matching" (its events; the second one lacks a comma
 * after "state" on the page, added here), "Equals-ignore-case matching",
 * the complex example, the note on a key given twice ("only anything-but
 * us-east will be taken into account") and the $or example ("c-count ...
 * or d-count ... or x-limit"). */
static void test_eb_exists_case_complex(void **state)
{
  static const char *count_obj =
    "{\"detail-type\": [\"EC2 Instance State-change Notification\"], "
    "\"resources\": [\"arn:aws:ec2:us-east-1:123456789012:instance/"
    "i-02ebd4584a2ebd341\"], \"detail\": {\"state\": [\"initializing\", "
    "\"running\"], \"c-count\": {\"c1\": 100}}}";
  static const char *pending =
    "{\"version\": \"0\", \"id\": \"7bf73129-1428-4cd3-a780-95db273d1602\", "
    "\"detail-type\": \"EC2 Instance State-change Notification\", "
    "\"source\": \"aws.ec2\", \"account\": \"123456789012\", \"time\": "
    "\"2015-11-11T21:29:54Z\", \"region\": \"us-east-1\", \"resources\": "
    "[\"arn:aws:ec2:us-east-1:123456789012:instance/i-abcd1111\"], "
    "\"detail\": {\"instance-id\": \"i-abcd1111\", \"state\": \"pending\"}}";
  static const char *no_state =
    "{\"detail-type\": [\"EC2 Instance State-change Notification\"], "
    "\"resources\": [\"arn:aws:ec2:us-east-1:123456789012:instance/"
    "i-02ebd4584a2ebd341\"], \"detail\": {\"c-count\": {\"c1\": 100}}}";
  static const char *complex =
    EB("{\"time\": [{\"prefix\": \"2017-10-02\"}], \"detail\": {\"state\": "
       "[{\"anything-but\": \"initializing\"}], \"c-count\": [{\"numeric\": "
       "[\">\", 0, \"<=\", 5]}], \"d-count\": [{\"numeric\": [\"<\", 10]}], "
       "\"x-limit\": [{\"anything-but\": [100, 200, 300]}]}}");
  static const char *twice =
    EB("{\"detail\": {\"location\": [{\"prefix\": \"us-\"}], \"location\": "
       "[{\"anything-but\": \"us-east\"}]}}");
  static const char *or =
    EB("{\"detail\": {\"$or\": [{\"c-count\": [{\"numeric\": [\">\", 0, "
       "\"<=\", 5]}]}, {\"d-count\": [{\"numeric\": [\"<\", 10]}]}, "
       "{\"x-limit\": [{\"numeric\": [\"=\", 3.018e2]}]}]}}");
  static const char *exists_state =
    EB("{\"detail\": {\"state\": [{\"exists\": true}]}}");
  static const char *no_count =
    EB("{\"detail\": {\"c-count\": [{\"exists\": false}]}}");
  static const char *ignore_case =
    EB("{\"detail-type\": [{\"equals-ignore-case\": \"ec2 instance "
       "state-change notification\"}]}");
  const struct fcase cases[] = {
    {exists_state, .keep = {pending}, .drop = {no_state}},
    /* "also matches ... because c-count isn't a leaf node" */
    {no_count, .keep = {pending, count_obj},
     .drop = {"{\"detail\": {\"c-count\": 3}}"}},
    {ignore_case, .keep = {count_obj}, .drop = {ASG_EVENT}},
    {complex,
     .keep = {"{\"time\": \"2017-10-02T16:24:49Z\", \"detail\": {\"state\": "
              "\"running\", \"c-count\": 5, \"d-count\": 3, "
              "\"x-limit\": 301.8}}"},
     .drop = {"{\"time\": \"2017-10-02T16:24:49Z\", \"detail\": {\"state\": "
              "\"running\", \"c-count\": 5, \"d-count\": 3, "
              "\"x-limit\": 200}}"}},
    {twice, .keep = {"{\"detail\": {\"location\": \"eu-west\"}}"},
     .drop = {"{\"detail\": {\"location\": \"us-east\"}}"}},
    {or,
     .keep = {"{\"detail\": {\"c-count\": 9, \"d-count\": 9}}",
              "{\"detail\": {\"x-limit\": 301.8}}"},
     .drop = {"{\"detail\": {\"c-count\": 0, \"d-count\": 10, "
              "\"x-limit\": 300}}"}},
  };
  (void)state;
  RUN(cases);
}

/* https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-create-pattern-operators.html
 * The comparison operator table's forms not covered above: anything-but
 * (begins with) "Region is not in the US", (ends with) "FileName does not
 * end with a .png extension", (ignore case) "any value besides
 * initializing or any other casing variation" (the page's rule has a
 * stray ": :" and "}", left out), anything-but using a wildcard "a file
 * path that includes /lib/", begins with (ignore case) "starts with the
 * letters eventb, regardless of case", ends with (ignore case) "ends with
 * the letters tbridge or ... TBRIDGE", and "Or (multiple fields)":
 * Location is "New York", or Day is "Monday". */
static void test_eb_operator_table(void **state)
{
  static const struct fcase cases[] = {
    {EB("{\"Region\": [{\"anything-but\": {\"prefix\": \"us-\"}}]}"),
     .keep = {"{\"Region\": \"eu-west-1\"}"},
     .drop = {"{\"Region\": \"us-west-2\"}"}},
    {EB("{\"FileName\": [{\"anything-but\": {\"suffix\": \".png\"}}]}"),
     .keep = {"{\"FileName\": \"a.jpg\"}"},
     .drop = {"{\"FileName\": \"a.png\"}"}},
    {EB("{\"state\": [{\"anything-but\": {\"equals-ignore-case\": "
        "\"initializing\"}}]}"),
     .keep = {"{\"state\": \"running\"}"},
     .drop = {"{\"state\": \"INITIALIZING\"}"}},
    {EB("{\"FilePath\": [{\"anything-but\": {\"wildcard\": "
        "\"*/lib/*\"}}]}"),
     .keep = {"{\"FilePath\": \"/usr/bin/ls\"}"},
     .drop = {"{\"FilePath\": \"/usr/lib/libc.so\"}"}},
    {EB("{\"service\": [{\"prefix\": {\"equals-ignore-case\": "
        "\"eventb\"}}]}"),
     .keep = {"{\"service\": \"EventBridge\"}"}},
    {EB("{\"service\": [{\"suffix\": {\"equals-ignore-case\": "
        "\"tbridge\"}}]}"),
     .keep = {"{\"service\": \"EVENTBRIDGE\"}"},
     .drop = {"{\"service\": \"EventBus\"}"}},
    {EB("{\"$or\": [{\"Location\": [\"New York\"]}, {\"Day\": "
        "[\"Monday\"]}]}"),
     .keep = {
      "{\"Location\": \"Boston\", \"Day\": "
      "\"Monday\"}"},
     .drop = {
      "{\"Location\": \"Boston\", \"Day\": "
      "\"Friday\"}"}},
  };
  (void)state;
  RUN(cases);
}

#define EMPLOYEES \
    "{\"employees\": [{\"firstName\": \"John\", \"lastName\": \"Doe\"}, " \
    "{\"firstName\": \"Anna\", \"lastName\": \"Smith\"}, {\"firstName\": " \
    "\"Peter\", \"lastName\": \"Jones\"}]}"

#define NESTED \
    "{\"employees\": [[{\"firstName\": \"John\", \"lastName\": \"Doe\"}, " \
    "{\"firstName\": \"Anna\", \"lastName\": \"Smith\"}], [{\"firstName\": " \
    "\"Peter\", \"lastName\": \"Jones\"}]]}"

#define README_EVENT \
    "{\"version\": \"0\", \"id\": \"ddddd4-aaaa-7777-4444-345dd43cc333\", " \
    "\"detail-type\": \"EC2 Instance State-change Notification\", " \
    "\"source\": \"aws.ec2\", \"account\": \"012345679012\", \"time\": " \
    "\"2017-10-02T16:24:49Z\", \"region\": \"us-east-1\", \"resources\": " \
    "[\"arn:aws:ec2:us-east-1:123456789012:instance/i-000000aaaaaa00000\"]," \
    " \"detail\": {\"c-count\": 5, \"d-count\": 3, \"x-limit\": 301.8, " \
    "\"source-ip\": \"10.0.0.33\", \"instance-id\": " \
    "\"i-000000aaaaaa00000\", \"state\": \"running\"}}"

/* https://github.com/aws/event-ruler (README; Event Ruler is the matching
 * library EventBridge published): wildcard matching ("Simple*Service",
 * escaping), the anything-but list forms of prefix, suffix, ignore-case
 * and wildcard, the complex example with its cidr, and "JSON Array
 * Matching": a rule on two fields of one array element matches only when
 * both are in the same element (Anna/Jones). */
static void test_event_ruler_readme(void **state)
{
  static const struct fcase cases[] = {
    {EB("{\"source\": [{\"wildcard\": \"Simple*Service\"}]}"),
     .keep = {"{\"source\": \"Simple Notification Service\"}",
              "{\"source\": \"SimpleService\"}"},
     .drop = {"{\"source\": \"Simple Queue Service!\"}"}},
    {EB("{\"source\": [{\"wildcard\": \"a\\\\*b\"}]}"),
     .keep = {"{\"source\": \"a*b\"}"},
     .drop = {"{\"source\": \"axb\"}"}},
    {EB("{\"source\": [{\"wildcard\": \"a\\\\\\\\*\"}]}"),
     .keep = {"{\"source\": \"a\\\\bc\"}"}},
    {EB("{\"detail\": {\"state\": [{\"anything-but\": {\"prefix\": "
        "[\"init\", \"error\"]}}]}}"),
     .drop = {"{\"detail\": {\"state\": \"error-7\"}}"}},
    {EB("{\"detail\": {\"instance-id\": [{\"anything-but\": {\"suffix\": "
        "[\"1234\", \"6789\"]}}]}}"),
     .keep = {"{\"detail\": {\"instance-id\": \"i-0000\"}}"}},
    {EB("{\"detail\": {\"state\": [{\"anything-but\": "
        "{\"equals-ignore-case\": [\"Stopped\", \"OverLoaded\"]}}]}}"),
     .drop = {"{\"detail\": {\"state\": \"overloaded\"}}"}},
    {EB("{\"detail\": {\"state\": [{\"anything-but\": {\"wildcard\": "
        "[\"*/bin/*.jar\", \"*/bin/*.class\"]}}]}}"),
     .drop = {"{\"detail\": {\"state\": \"/opt/bin/app.class\"}}"}},
    {EB("{\"time\": [{\"prefix\": \"2017-10-02\"}], \"detail\": {\"state\": "
        "[{\"anything-but\": \"initializing\"}], \"c-count\": [{\"numeric\":"
        " [\">\", 0, \"<=\", 5]}], \"d-count\": [{\"numeric\": [\"<\", "
        "10]}], \"x-limit\": [{\"anything-but\": [100, 200, 300]}], "
        "\"source-ip\": [{\"cidr\": \"10.0.0.0/8\"}]}}"),
     .keep = {README_EVENT}},
    {EB("{\"detail-type\": [\"EC2 Instance State-change Notification\"], "
        "\"resources\": [\"arn:aws:ec2:us-east-1:123456789012:instance/"
        "i-000000aaaaaa00000\"], \"detail\": {\"state\": [\"initializing\", "
        "\"running\"]}}"),
     .keep = {README_EVENT}},
    {EB("{\"employees\": {\"firstName\": [\"Anna\"]}}"),
     .keep = {EMPLOYEES,
              NESTED}},
    {EB("{\"employees\": {\"firstName\": [\"Anna\"], \"lastName\": "
        "[\"Jones\"]}}"),
     .drop = {EMPLOYEES}},
    {EB("{\"employees\": {\"firstName\": [\"Anna\"], \"lastName\": "
        "[\"Smith\"]}}"),
     .keep = {NESTED}},
  };
  (void)state;
  RUN(cases);
}

/* ======== What kcld decides (filter.h) ======== */

static void test_kcld_semantics(void **state)
{
  static const struct fcase cases[] = {
    /* anything-but needs the field; other types pass it. */
    {EB("{\"s\": [{\"anything-but\": \"x\"}]}"),
     .keep = {"{\"s\": 5}"},
     .drop = {"{}"}},
    {EB("{\"s\": [{\"anything-but\": [5]}]}"),
     .keep = {"{\"s\": \"5\"}"},
     .drop = {"{\"s\": 5.0}"}},
    /* Arrays: any element; [100, 50] has a value that is neither. */
    {EB("{\"p\": [{\"anything-but\": [100, 500]}]}"),
     .keep = {"{\"p\": [100, 50]}"},
     .drop = {"{\"p\": [100, 500]}"}},
    {EB("{\"p\": [\"b\"]}"), .keep = {"{\"p\": [[\"a\"], [\"b\"]]}"}},
    /* exists: null is a value; an empty list or a mapping is not. */
    {EB("{\"p\": [{\"exists\": true}]}"),
     .keep = {"{\"p\": null}"},
     .drop = {"{\"p\": []}"}},
    {EB("{\"p\": [{\"exists\": false}]}"), .keep = {"{\"p\": []}"}},
    {EB("{\"p\": [{\"exists\": true}]}"), .drop = {"{\"p\": {\"q\": 1}}"}},
    /* A nested pattern on an absent or scalar field: as if empty. */
    {EB("{\"a\": {\"b\": [{\"exists\": false}]}}"),
     .keep = {"{}",
              "{\"a\": 1}"}},
    {EB("{\"a\": {\"b\": [1]}}"),
     .keep = {"{\"a\": [{\"b\": 2}, {\"b\": 1}]}"}},
    {EB("{\"a\": {\"b\": [{\"exists\": false}]}}"),
     .drop = {"{\"a\": [{\"b\": 2}]}"}},
    /* A payload that is JSON but not a mapping. */
    {EB("{\"a\": [1]}"), .keep = {"[{\"a\": 1}]"}},
    {EB("{\"a\": [{\"exists\": false}]}"), .keep = {"42"}},
    {EB("{\"a\": [{\"exists\": true}]}"), .drop = {"\"text\""}},
    /* A key twice in the payload: the last one counts. */
    {EB("{\"a\": [1]}"), .drop = {"{\"a\": 1, \"a\": 2}"}},
    {EB("{\"a\": [2]}"), .keep = {"{\"a\": 1, \"a\": 2}"}},
    /* Members no pattern names are skipped, but still must be JSON; a
    * name written with escapes is still the name. */
    {EB("{\"a\": [1]}"),
     .keep = {"{\"b\": {\"a\": 2}, \"\\u0061\": 1}"},
     .drop = {"{\"a\": 1, \"b\": [1,]}",
              "{\"b\": {\"c\": \"\xc3\"}, \"a\": 1}"}},
    {EB("{\"a\": {\"b\": [1]}}"),
     .keep = {"{\"b\": 1, \"a\": {\"x\": 0, \"b\": 1}}"}},
    /* Escapes in keys and values are decoded before comparing. */
    {EB("{\"k\\u00e9y\": [\"caf\\u00e9 \\\"x\\\"\"]}"),
     .keep = {"{\"k\\u00e9y\": \"caf\xc3\xa9 \\\"x\\\"\"}"}},
    {EB("{\"k\xc3\xa9y\": [\"a\\u0000b\"]}"),
     .keep = {"{\"k\\u00e9y\": \"a\\u0000b\"}"}},
    /* Case folding beyond ASCII; Turkish dotless i stays itself. */
    {EB("{\"c\": [{\"equals-ignore-case\": \"\xc3\xa9t\xc3\xa9\"}]}"),
     .keep = {"{\"c\": \"\xc3\x89T\xc3\x89\"}"}},
    {EB("{\"c\": [{\"equals-ignore-case\": \"\xd0\xbc\xd0\xb8\xd1\x80\"}]}"),
     .keep = {"{\"c\": \"\xd0\x9c\xd0\x98\xd0\xa0\"}"}},
    {EB("{\"c\": [{\"suffix\": {\"equals-ignore-case\": \"\xcf\x83\"}}]}"),
     .keep = {"{\"c\": \"\xce\x9b\xce\x9f\xce\xa3\"}"}},
    {EB("{\"c\": [{\"equals-ignore-case\": \"i\"}]}"),
     .drop = {"{\"c\": \"\xc4\xb0\"}"}},
    {EB("{\"c\": [{\"suffix\": {\"equals-ignore-case\": \"abc\"}}]}"),
     .drop = {"{\"c\": \"bc\"}"}},
    /* Wildcards: empty runs, several stars, anchors. */
    {EB("{\"w\": [{\"wildcard\": \"*\"}]}"), .keep = {"{\"w\": \"\"}"}},
    {EB("{\"w\": [{\"wildcard\": \"a*b*c\"}]}"),
     .keep = {"{\"w\": \"abbc\"}"},
     .drop = {"{\"w\": \"acb\"}"}},
    {EB("{\"w\": [{\"wildcard\": \"ab*ba\"}]}"), .drop = {"{\"w\": \"aba\"}"}},
    {EB("{\"w\": [{\"wildcard\": \"x\"}]}"), .keep = {"{\"w\": \"x\"}"}},
    /* Numbers: as doubles; a huge one is not comparable. */
    {EB("{\"n\": [{\"numeric\": [\">=\", -1e9, \"<\", 5e9]}]}"),
     .keep = {"{\"n\": 4999999999.999999}"}},
    {EB("{\"n\": [{\"numeric\": [\">\", 0.1]}]}"),
     .keep = {"{\"n\": 0.1000001}"}},
    {EB("{\"n\": [{\"numeric\": [\"<\", 0]}]}"), .drop = {"{\"n\": -1e400}"}},
    {EB("{\"n\": [{\"numeric\": [\"=\", 5]}]}"),
     .keep = {"{\"n\": 5.0e0}"},
     .drop = {"{\"n\": \"5\"}"}},
    /* IPv6 blocks; an IPv4 text is not in one. */
    {EB("{\"ip\": [{\"cidr\": \"2001:db8::/32\"}]}"),
     .keep = {"{\"ip\": \"2001:db8:1::7\"}"}},
    {EB("{\"ip\": [{\"cidr\": \"2001:db8::/33\"}]}"),
     .drop = {"{\"ip\": \"2001:db8:8000::1\"}"}},
    {EB("{\"ip\": [{\"cidr\": \"::/0\"}]}"),
     .drop = {"{\"ip\": \"10.0.0.1\"}"}},
    {EB("{\"ip\": [{\"cidr\": \"10.1.2.3/13\"}]}"),
     .keep = {"{\"ip\": \"10.7.0.1\"}"}},
    /* exact, booleans. */
    {EB("{\"e\": [{\"exact\": \"x\"}]}"), .keep = {"{\"e\": \"x\"}"}},
    {EB("{\"b\": [true]}"),
     .keep = {"{\"b\": true}"},
     .drop = {"{\"b\": \"true\"}"}},
    {EB("{\"b\": [false]}"), .keep = {"{\"b\": false}"}},
    /* Metadata and data together, in an $or at the top. */
    {"{\"$or\": [{\"partitionKey\": [\"zz\"]}, {\"data\": {\"a\": [1]}}]}",
     .keep = {"{\"a\": 1}"},
     .drop = {"{\"a\": 2}"}},
    /* The Pattern wrapper alone. */
    {"{\"Pattern\": \"{\\\"data\\\": {\\\"a\\\": [1]}}\"}",
     .keep = {"{\"a\": 1}"}},
  };
  (void)state;
  RUN(cases);
}

/* ======== Invalid patterns ======== */

struct bad {
  const char *pattern;
  const char *path;        /* expected err.path */
  const char *msg;         /* a piece of err.msg */
  int line, col;           /* expected position; 0 = not checked */
};

static void test_invalid_patterns(void **state)
{
  static const struct bad cases[] = {
    {"{\"data\": {\"t\": [{\"numeric\": [\"=>\", 5]}]}}", "data.t[0].numeric",
     "\"=>\" is not an operator", 1, 30},
    {"{\"data\": {\"t\": [{\"numeric\": [\">\", \"5\"]}]}}",
     "data.t[0].numeric", "must be a number", 0, 0},
    {"{\"data\": {\"t\": [{\"numeric\": [\">\", 5, \"<\", 1]}]}}",
     "data.t[0].numeric", "lower bound", 0, 0},
    {"{\"data\": {\"t\": [{\"numeric\": [\"<\", 5, \"<\", 9]}]}}",
     "data.t[0].numeric", "not an operator", 0, 0},
    {"{\"data\": {\"t\": [{\"numeric\": [\"=\", 5, \"<\", 9]}]}}",
     "data.t[0].numeric", "not an operator", 0, 0},
    {"{\"data\": {\"t\": [{\"numeric\": [\">\", 1e999]}]}}",
     "data.t[0].numeric", "too large", 0, 0},
    {"{\"data\": {\"t\": [{\"numeric\": \">5\"}]}}", "data.t[0].numeric",
     "expected [OP, NUMBER]", 0, 0},
    {"{\"partitionKey\": \"1\"}", "partitionKey", "write [\"1\"]", 1, 18},
    {"{\"partitionKey\": {\"a\": [1]}}", "partitionKey", "list of values",
     0, 0},
    {"{\"order\": {\"type\": [\"buy\"]}}", "order",
     "not a field of a Kinesis record", 1, 11},
    {"{\"data\": {}}", "data", "empty mapping", 0, 0},
    {"{}", "", "empty mapping", 0, 0},
    {"[1]", "", "a pattern is a mapping", 0, 0},
    {"{\"data\": {\"a\": []}}", "data.a", "empty list", 0, 0},
    {"{\"data\": {\"a\": [[1]]}}", "data.a[0]", "a list inside", 0, 0},
    {"{\"data\": {\"a\": [{\"prefix\": 5}]}}", "data.a[0].prefix",
     "expected a string", 0, 0},
    {"{\"data\": {\"a\": [{\"prefix\": {\"equals-ignore-cas\": \"x\"}}]}}",
     "data.a[0].prefix", "equals-ignore-case", 0, 0},
    {"{\"data\": {\"a\": [{\"prefix\": \"x\", \"suffix\": \"y\"}]}}",
     "data.a[0]", "one operator", 0, 0},
    {"{\"data\": {\"a\": [{}]}}", "data.a[0]", "one operator", 0, 0},
    {"{\"data\": {\"a\": [{\"begins-with\": \"x\"}]}}",
     "data.a[0].begins-with", "unknown operator", 0, 0},
    {"{\"data\": {\"a\": [{\"exists\": \"yes\"}]}}", "data.a[0].exists",
     "true or false", 0, 0},
    {"{\"data\": {\"a\": [{\"anything-but\": [\"x\", 1]}]}}",
     "data.a[0].anything-but", "expected a string", 0, 0},
    {"{\"data\": {\"a\": [{\"anything-but\": [1, \"x\"]}]}}",
     "data.a[0].anything-but", "all strings or all numbers", 0, 0},
    {"{\"data\": {\"a\": [{\"anything-but\": []}]}}",
     "data.a[0].anything-but", "empty list", 0, 0},
    {"{\"data\": {\"a\": [{\"anything-but\": null}]}}",
     "data.a[0].anything-but", "strings or numbers", 0, 0},
    {"{\"data\": {\"a\": [{\"anything-but\": {\"prefix\": \"\"}}]}}",
     "data.a[0].anything-but", "empty string", 0, 0},
    {"{\"data\": {\"a\": [{\"anything-but\": {\"numeric\": [\">\", 1]}}]}}",
     "data.a[0].anything-but", "is not one of", 0, 0},
    {"{\"data\": {\"a\": [{\"wildcard\": \"a**b\"}]}}", "data.a[0].wildcard",
     "consecutive", 0, 0},
    {"{\"data\": {\"a\": [{\"wildcard\": \"a\\\\b\"}]}}",
     "data.a[0].wildcard", "backslash", 0, 0},
    {"{\"data\": {\"a\": [{\"wildcard\": \"a\\\\\"}]}}",
     "data.a[0].wildcard", "backslash", 0, 0},
    {"{\"data\": {\"a\": [{\"cidr\": \"10.0.0.0\"}]}}", "data.a[0].cidr",
     "ADDRESS/BITS", 0, 0},
    {"{\"data\": {\"a\": [{\"cidr\": \"10.0.0.0/33\"}]}}", "data.a[0].cidr",
     "too long", 0, 0},
    {"{\"data\": {\"a\": [{\"cidr\": \"10.0.0/8\"}]}}", "data.a[0].cidr",
     "not an IPv4 or IPv6", 0, 0},
    {"{\"data\": {\"a\": [{\"cidr\": \"::1/x\"}]}}", "data.a[0].cidr",
     "must be a number", 0, 0},
    {"{\"data\": {\"$or\": [{\"a\": [1]}]}}", "data.$or", "two or more",
     0, 0},
    {"{\"data\": {\"$or\": [{\"a\": [1]}, 5]}}", "data.$or[1]",
     "expected a mapping", 0, 0},
    {"{\"$or\": [{\"data\": {\"a\": [1]}}, {\"nope\": [1]}]}", "$or[1].nope",
     "not a field", 0, 0},
    {"{\"data\": {\"a\": [1]}", "", "not JSON", 1, 20},
    {"{\"data\":\n {\"a\": [1,]}}", "", "not JSON", 2, 11},
    {"{\"Pattern\": \"{\\\"data\\\": {\\\"a\\\": 1}}\"}", "Pattern.data.a",
     "write [1]", 1, 16},
    {"{\"Pattern\": 5}", "Pattern", "JSON string", 0, 0},
    {"{\"Filters\": [{\"Pattern\": \"{\\\"data\\\": {\\\"a\\\": [1]}}\"}, "
     "{\"Pattern\": \"{\\\"x\\\": [1]}\"}]}", "Filters[1].Pattern.x",
     "not a field", 0, 0},
    {"{\"Filters\": [{\"pattern\": \"{}\"}]}", "Filters[0]", "Pattern", 0,
     0},
    {"{\"Filters\": {}}", "Filters", "a list", 0, 0},
    {"{\"Filters\": []}", "Filters", "an empty list", 0, 0},
  };
  (void)state;

  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    const struct bad *b = &cases[i];
    struct kcld_filter *f = kcld_filter_new();
    struct kcld_filter_error err;
    int rc;
    memset(&err, 0, sizeof(err));
    rc = kcld_filter_add_text(f, b->pattern, strlen(b->pattern), &err);
    if (rc != KCLD_ECONFIG || strcmp(err.path, b->path) != 0 ||
        !strstr(err.msg, b->msg) ||
        (b->line && (err.line != b->line || err.col != b->col))) {
      fprintf(stderr, "case %zu: %s\n  rc %d at %d:%d path \"%s\": %s\n", i,
              b->pattern, rc, err.line, err.col, err.path, err.msg);
      fail();
    }
    /* All or none: nothing of a refused text stays. */
    assert_int_equal(kcld_filter_count(f), 0);
    kcld_filter_free(f);
  }
}

/* Nesting is bounded, in text and in trees. */
static void test_depth_limit(void **state)
{
  char text[512];
  size_t n = 0;
  struct kcld_filter *f = kcld_filter_new();
  struct kcld_filter_error err;
  (void)state;

  n += (size_t)snprintf(text + n, sizeof(text) - n, "{\"data\": ");
  for (int i = 0; i < KCLD_FILTER_MAX_DEPTH; i++)
    n += (size_t)snprintf(text + n, sizeof(text) - n, "{\"a\": ");
  n += (size_t)snprintf(text + n, sizeof(text) - n, "[1]");
  for (int i = 0; i <= KCLD_FILTER_MAX_DEPTH; i++)
    text[n++] = '}';
  text[n] = '\0';
  assert_int_equal(kcld_filter_add_text(f, text, n, &err), KCLD_ECONFIG);
  assert_non_null(strstr(err.msg, "deeper"));
  kcld_filter_free(f);
}

/* ======== Trees as config.c builds them from YAML ======== */

/* filter:
 *   - data:
 *       temperature: [{numeric: [">", 30]}]
 *   - partitionKey: [{prefix: device-}]
 * with every node where YAML would put it; then an error at a node. */
static void test_tree_from_yaml(void **state)
{
  struct kcld_filter_node *p1, *data, *t, *op, *num, *p2, *pk, *pre;
  struct kcld_filter *f = kcld_filter_new();
  struct kcld_filter_error err;
  struct kcld_record r;
  char *json;
  (void)state;

  p1 = kcld_filter_node_add(NULL, KCLD_FILTER_OBJECT, NULL, 0, NULL, 0, 2,
                            5);
  data = kcld_filter_node_add(p1, KCLD_FILTER_OBJECT, "data", 4, NULL, 0, 3,
                              7);
  t = kcld_filter_node_add(data, KCLD_FILTER_ARRAY, "temperature", 11, NULL,
                           0, 3, 20);
  op = kcld_filter_node_add(t, KCLD_FILTER_OBJECT, NULL, 0, NULL, 0, 3, 21);
  num = kcld_filter_node_add(op, KCLD_FILTER_ARRAY, "numeric", 7, NULL, 0, 3,
                             31);
  assert_int_equal(kcld_filter_scalar_type(">", 1), KCLD_FILTER_STRING);
  assert_non_null(kcld_filter_node_add(num, KCLD_FILTER_STRING, NULL, 0, ">",
                                       1, 3, 32));
  assert_int_equal(kcld_filter_scalar_type("30", 2), KCLD_FILTER_NUMBER);
  assert_non_null(kcld_filter_node_add(num, KCLD_FILTER_NUMBER, NULL, 0,
                                       "30", 2, 3, 37));
  assert_int_equal(kcld_filter_add(f, p1, &err), 0);

  json = kcld_filter_node_json(p1);
  assert_string_equal(json, "{\"data\":{\"temperature\":[{\"numeric\":"
                            "[\">\",30]}]}}");
  free(json);

  p2 = kcld_filter_node_add(NULL, KCLD_FILTER_OBJECT, NULL, 0, NULL, 0, 4, 5);
  pk = kcld_filter_node_add(p2, KCLD_FILTER_ARRAY, "partitionKey", 12, NULL,
                            0, 4, 19);
  pre = kcld_filter_node_add(pk, KCLD_FILTER_OBJECT, NULL, 0, NULL, 0, 4, 20);
  assert_non_null(kcld_filter_node_add(pre, KCLD_FILTER_STRING, "prefix", 6,
                                       "device-", 7, 4, 28));
  assert_int_equal(kcld_filter_add(f, p2, &err), 0);
  assert_int_equal(kcld_filter_count(f), 2);

  r = record("{\"temperature\": 31}", 19, "x");
  assert_int_equal(kcld_filter_match(f, &r), 1);
  r = record("{\"temperature\": 30}", 19, "x");
  assert_int_equal(kcld_filter_match(f, &r), 0);
  r = record("{\"temperature\": 30}", 19, "device-7");
  assert_int_equal(kcld_filter_match(f, &r), 1);
  r = record("binary \x01", 8, "device-7");
  assert_int_equal(kcld_filter_match(f, &r), 1);

  /* A YAML `30` that was written quoted ("30") is a string: the error
   * names its node's position. */
  free(num->last->text);
  num->last->type = KCLD_FILTER_STRING;
  num->last->text = strdup("30");
  assert_int_equal(kcld_filter_add(f, p1, &err), KCLD_ECONFIG);
  assert_int_equal(err.line, 3);
  assert_int_equal(err.col, 37);
  assert_string_equal(err.path, "data.temperature[0].numeric");
  assert_int_equal(kcld_filter_count(f), 2);

  kcld_filter_node_free(p1);
  kcld_filter_node_free(p2);
  kcld_filter_free(f);
}

static void test_scalar_types_and_json(void **state)
{
  struct kcld_filter_node *root = NULL;
  struct kcld_filter_error err;
  char *json;
  static const char *text =
    "{\"data\": {\"a\": [3.0e2, -0.5, true, false, null, \"\\u00e9\\n\"]}}";
  (void)state;

  assert_int_equal(kcld_filter_scalar_type("null", 4), KCLD_FILTER_NULL);
  assert_int_equal(kcld_filter_scalar_type("~", 1), KCLD_FILTER_NULL);
  assert_int_equal(kcld_filter_scalar_type("", 0), KCLD_FILTER_NULL);
  assert_int_equal(kcld_filter_scalar_type("True", 4), KCLD_FILTER_TRUE);
  assert_int_equal(kcld_filter_scalar_type("FALSE", 5), KCLD_FILTER_FALSE);
  assert_int_equal(kcld_filter_scalar_type("yes", 3), KCLD_FILTER_STRING);
  assert_int_equal(kcld_filter_scalar_type("-1.5e3", 6), KCLD_FILTER_NUMBER);
  assert_int_equal(kcld_filter_scalar_type("01", 2), KCLD_FILTER_STRING);
  assert_int_equal(kcld_filter_scalar_type(".5", 2), KCLD_FILTER_STRING);
  assert_int_equal(kcld_filter_scalar_type("1 ", 2), KCLD_FILTER_STRING);
  assert_int_equal(kcld_filter_scalar_type("device-", 7),
                   KCLD_FILTER_STRING);

  assert_int_equal(kcld_filter_parse_text(text, strlen(text), &root, &err),
                   0);
  json = kcld_filter_node_json(root);
  assert_string_equal(json, "{\"data\":{\"a\":[3.0e2,-0.5,true,false,null,"
                            "\"\xc3\xa9\\n\"]}}");
  free(json);
  assert_int_equal(root->first->line, 1);
  assert_int_equal(root->first->col, 10);
  kcld_filter_node_free(root);
}

/* ======== Larger payloads ======== */

/* Hundreds of values (the document leaves its stack array), escapes in
 * many strings, deep nesting, and a match found at the end. */
static void test_large_payload(void **state)
{
  size_t cap = 64 * 1024, n = 0;
  char *data = malloc(cap);
  struct kcld_filter *f;
  struct kcld_record r;
  (void)state;

  assert_non_null(data);
  n += (size_t)snprintf(data + n, cap - n, "{\"items\": [");
  for (int i = 0; i < 500; i++)
    n += (size_t)snprintf(data + n, cap - n, "%s{\"id\": %d, \"name\": "
                          "\"n\\u0041%d\", \"tags\": [\"t%d\", \"u\"]}",
                          i ? ", " : "", i, i, i % 7);
  n += (size_t)snprintf(data + n, cap - n, "], \"deep\": ");
  for (int i = 0; i < 200; i++)
    data[n++] = '[';
  n += (size_t)snprintf(data + n, cap - n, "{\"x\": \"found\"}");
  for (int i = 0; i < 200; i++)
    data[n++] = ']';
  data[n++] = '}';

  f = compile("{\"data\": {\"items\": {\"id\": [499], \"name\": "
              "[\"nA499\"], \"tags\": [\"t2\"]}, \"deep\": {\"x\": "
              "[\"found\"]}}}");
  r = record(data, n, "k");
  assert_int_equal(kcld_filter_match(f, &r), 1);
  kcld_filter_free(f);
  f = compile("{\"data\": {\"items\": {\"id\": [499], \"tags\": [\"t3\"]}}}");
  assert_int_equal(kcld_filter_match(f, &r), 0);
  kcld_filter_free(f);
  free(data);
}

/* ======== Throughput (a figure, not an assertion) ======== */

static double now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Records per second through kcld_filter_match, n times. */
static double rate(const struct kcld_filter *f, const struct kcld_record *r,
                   long n, int expect)
{
  double t0 = now_s();
  long agree = 0;
  for (long i = 0; i < n; i++)
    agree += kcld_filter_match(f, r) == expect;
  assert_int_equal(agree, n);
  return (double)n / (now_s() - t0);
}

/* Prints records per second through kcld_filter_match for the two
 * patterns: a record the partitionKey pattern keeps (the payload is never
 * read), and records dropped after their payload was parsed, ~170 B and
 * 1 KiB of JSON.  (The figure for the docs; no timing assertion.) */
static void test_throughput_figure(void **state)
{
  static const char *small =
    "{\"device\": \"sensor-0042\", \"temperature\": 28.5, \"humidity\": 61, "
    "\"ts\": \"2026-12-05T21:08:29Z\", \"site\": {\"name\": \"plant-7\", "
    "\"zone\": \"B\"}, \"tags\": [\"a\", \"b\", \"c\"], \"ok\": true}";
  struct kcld_filter *f = compile(
    "{\"Filters\": [{\"Pattern\": \"{\\\"data\\\": {\\\"temperature\\\": "
    "[{\\\"numeric\\\": [\\\">\\\", 30]}]}}\"}, {\"Pattern\": "
    "\"{\\\"partitionKey\\\": [{\\\"prefix\\\": \\\"device-\\\"}]}\"}]}");
  char big[1200];
  size_t n = 0;
  struct kcld_record r = record(small, strlen(small), "device-1");
  double kept, dropped, dropped_big;
  (void)state;

  n += (size_t)snprintf(big, sizeof(big), "{\"temperature\": 21.5, "
                        "\"readings\": [");
  for (int i = 0; n < 980; i++)
    n += (size_t)snprintf(big + n, sizeof(big) - n, "%s{\"k\": \"r%d\", "
                          "\"v\": %d.25}", i ? ", " : "", i, i);
  n += (size_t)snprintf(big + n, sizeof(big) - n, "], \"site\": \"x\"}");

  kept = rate(f, &r, 100000, 1);
  r = record(small, strlen(small), "other");
  dropped = rate(f, &r, 100000, 0);
  r = record(big, n, "other");
  dropped_big = rate(f, &r, 20000, 0);
  printf("filter throughput: %.0f records/s kept on partitionKey (payload "
         "not read); %.0f records/s dropped after parsing %zu B of JSON; "
         "%.0f records/s after %zu B\n", kept, dropped, strlen(small),
         dropped_big, n);
  kcld_filter_free(f);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_lambda_operator_table),
    cmocka_unit_test(test_lambda_exact_representation),
    cmocka_unit_test(test_lambda_filtering_examples),
    cmocka_unit_test(test_lambda_duplicate_keys),
    cmocka_unit_test(test_lambda_stream_formats),
    cmocka_unit_test(test_lambda_filter_count_and_or),
    cmocka_unit_test(test_kinesis_page),
    cmocka_unit_test(test_eb_event_patterns),
    cmocka_unit_test(test_eb_null_and_empty),
    cmocka_unit_test(test_eb_arrays),
    cmocka_unit_test(test_eb_content_filtering),
    cmocka_unit_test(test_eb_exists_case_complex),
    cmocka_unit_test(test_eb_operator_table),
    cmocka_unit_test(test_event_ruler_readme),
    cmocka_unit_test(test_kcld_semantics),
    cmocka_unit_test(test_invalid_patterns),
    cmocka_unit_test(test_depth_limit),
    cmocka_unit_test(test_tree_from_yaml),
    cmocka_unit_test(test_scalar_types_and_json),
    cmocka_unit_test(test_large_payload),
    cmocka_unit_test(test_throughput_figure),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
