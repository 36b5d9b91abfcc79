-- Open (issued, unpaid) invoices per customer and currency, by days past due as of today
-- (UTC, at query time). Buckets: not yet due (due today or later), 1-30, 31-60, 61-90 and
-- over 90 days past due. Amounts are amount_due: what the customer still owes.
with open_invoices as (
    select
        customer_id,
        currency,
        amount_due,
        cast(due_date at time zone 'UTC' as date) as due_day,
        cast(current_timestamp at time zone 'UTC' as date) as as_of_date
    from {dataset}.invoices
    where deleted_at is null and status = 'issued'
),
aged as (
    select open_invoices.*, as_of_date - due_day as days_past_due
    from open_invoices
)
select
    a.customer_id,
    c.name as customer_name,
    a.currency,
    count(*) as open_invoices,
    sum(a.amount_due) as amount_due,
    sum(case when a.days_past_due is null or a.days_past_due <= 0 then a.amount_due else 0 end)
        as not_yet_due,
    sum(case when a.days_past_due between 1 and 30 then a.amount_due else 0 end) as days_1_30,
    sum(case when a.days_past_due between 31 and 60 then a.amount_due else 0 end) as days_31_60,
    sum(case when a.days_past_due between 61 and 90 then a.amount_due else 0 end) as days_61_90,
    sum(case when a.days_past_due > 90 then a.amount_due else 0 end) as days_over_90,
    min(a.due_day) as oldest_due_date,
    max(a.as_of_date) as as_of_date
from aged a
left join {dataset}.customers c on c.id = a.customer_id
group by a.customer_id, c.name, a.currency
